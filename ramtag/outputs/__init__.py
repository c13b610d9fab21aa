"""What ramtag writes: one Arrow schema, one output protocol, and its implementations.

- ``schema``: the columns, the provenance metadata, the settings two runs must share;
- ``formats``: the table of output formats and their writers;
- ``journal``: the journal, lock and settings file of a resumable output;
- ``base``: the ``Output`` protocol, ``Tee`` and ``Collected``;
- ``file``, ``stdout``, ``sidecars`` (with ``xmp``, ``xmlspans``), ``dataset``: the outputs;
- ``targets``: the outputs a run's options ask for.

Names are imported from here lazily, so choosing a format on the command line loads no pyarrow.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "METADATA_KEY": "schema", "Layout": "schema", "output_schema": "schema", "read_metadata": "schema",
    "schema_for": "schema", "to_record_batch": "schema", "settings_of": "schema", "differences": "schema",
    "FORMATS": "formats", "format_for": "formats", "text_sink": "formats",
    "OutputFile": "formats", "ResumableOutput": "file",
    "Output": "base", "Tee": "base", "Collected": "base",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(name)
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
