"""``python -m ramtag``: the same command line as ``ramtag``."""

from ramtag.cli.app import program

program()
