"""The ``ramtag`` command line: ``app.py`` wires the commands, one module per command."""
