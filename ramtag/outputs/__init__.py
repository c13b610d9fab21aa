"""What ramtag writes: one Arrow schema, and the Parquet, CSV and JSON Lines writers that share it."""

from .schema import LANGS, METADATA_KEY, Layout, output_schema, read_metadata, schema_for, to_record_batch
from .tabular import FORMATS, OutputFile, format_for, text_sink

__all__ = [
    "FORMATS",
    "LANGS",
    "METADATA_KEY",
    "Layout",
    "OutputFile",
    "format_for",
    "output_schema",
    "read_metadata",
    "schema_for",
    "text_sink",
    "to_record_batch",
]
