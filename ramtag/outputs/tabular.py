"""Writers for the shared schema: Parquet, CSV and JSON Lines, and the atomic output file.

Every writer takes Arrow record batches as they come and keeps at most one row group in memory.
CSV and JSON Lines carry the same columns as Parquet: in CSV, lists are joined with ``|`` (no
tag contains one) and quoting is the ``csv`` module's, so any path survives a round trip; floats
are written as the shortest text that reads back to the same float32.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, BinaryIO, Protocol, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import AtomicFile
from ..errors import OutputError, UsageError

FORMATS = ("parquet", "csv", "jsonl")
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
LIST_SEPARATOR = "|"
# A row group is flushed at this many bytes of buffered data (or ROW_GROUP_ROWS rows), which
# bounds memory however many images a run has; all_scores rows are large, plain rows small.
ROW_GROUP_BYTES = 32 * 1024 * 1024
ROW_GROUP_ROWS = 50_000


def format_for(path: Path, explicit: str | None = None) -> str:
    """The output format: ``explicit`` when given, else from the file's extension."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise UsageError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        return explicit
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise UsageError(
            f"{path}: cannot tell the format from the extension; "
            "name it .parquet, .csv or .jsonl, or pass --format"
        )
    return found


class Sink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Stop without finishing the output (it is about to be deleted)."""


class ParquetSink:
    """Parquet in bounded row groups, written as batches arrive."""

    def __init__(self, where: str | Path | BinaryIO, schema: pa.Schema) -> None:
        self.schema = schema
        self._writer = pq.ParquetWriter(where, schema, compression="zstd")
        self._pending: list[pa.RecordBatch] = []
        self._rows = 0
        self._bytes = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._rows += batch.num_rows
        self._bytes += batch.nbytes
        if self._rows >= ROW_GROUP_ROWS or self._bytes >= ROW_GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            table = pa.Table.from_batches(self._pending, schema=self.schema)
            self._writer.write_table(table, row_group_size=max(self._rows, 1))
        self._pending, self._rows, self._bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def abort(self) -> None:
        self._pending = []
        try:
            self._writer.close()
        except (OSError, pa.ArrowException):
            pass  # the file is being thrown away; the error that got us here is the one to report


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return LIST_SEPARATOR.join(_text(item) for item in value)
    if isinstance(value, float):
        return str(np.float32(value))
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, float):  # all floats in the schema are float32: keep their shortest form
        return float(str(np.float32(value)))
    return value


class CsvSink:
    """CSV with a header row; pandas and spreadsheets read it back unchanged."""

    def __init__(self, stream: TextIO, schema: pa.Schema) -> None:
        self._stream = stream
        self._csv = csv.writer(stream)
        self._csv.writerow(schema.names)

    def write(self, batch: pa.RecordBatch) -> None:
        columns = [column.to_pylist() for column in batch.columns]
        self._csv.writerows([_text(value) for value in row] for row in zip(*columns))

    def close(self) -> None:
        self._stream.flush()

    def abort(self) -> None:
        pass


class JsonLinesSink:
    """One JSON object per image and line: what a pipe to ``jq`` or another program wants."""

    def __init__(self, stream: TextIO, schema: pa.Schema) -> None:
        self._stream = stream

    def write(self, batch: pa.RecordBatch) -> None:
        for row in batch.to_pylist():
            line = json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False)
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()

    def abort(self) -> None:
        pass


def text_sink(fmt: str, stream: TextIO, schema: pa.Schema) -> Sink:
    if fmt == "csv":
        return CsvSink(stream, schema)
    if fmt == "jsonl":
        return JsonLinesSink(stream, schema)
    raise UsageError(f"{fmt} cannot be written to a text stream; give --out FILE")


class OutputFile:
    """A new version of ``dest`` written beside it and renamed onto it only when complete.

    Until ``commit()``, ``dest`` is untouched: absent, or the previous complete version.
    """

    def __init__(self, dest: Path, fmt: str, schema: pa.Schema, *, tmp: Path | None = None) -> None:
        self.dest = dest
        self._pending = AtomicFile(dest, tmp=tmp, keep_mode=False)
        self.tmp = self._pending.path
        try:
            self._file = open(self.tmp, "wb")
        except OSError as exc:
            raise OutputError(f"{dest}: cannot write here ({exc.strerror})") from None
        if fmt == "parquet":
            self._text = None
            self.sink: Sink = ParquetSink(self._file, schema)
        else:
            self._text = io.TextIOWrapper(self._file, encoding="utf-8", newline="")
            self.sink = text_sink(fmt, self._text, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self.sink.write(batch)

    def commit(self) -> None:
        self.sink.close()
        (self._text or self._file).close()
        try:
            self._pending.commit()
        except OSError as exc:
            raise OutputError(f"{self.dest}: cannot replace it ({exc.strerror})") from None

    def discard(self) -> None:
        self.sink.abort()
        (self._text or self._file).close()
        self._pending.discard()
