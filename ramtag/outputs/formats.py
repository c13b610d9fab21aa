"""The output formats, in one table, and their writers: Parquet, CSV and JSON Lines.

Every writer takes Arrow record batches of the shared schema as they come and keeps at most one row
group in memory. CSV and JSON Lines carry the same columns as Parquet: in CSV, lists are joined with
``|`` (no tag contains one) and quoting is the ``csv`` module's, so any path survives a round trip;
floats are written as the shortest text that reads back to the same float32. Text a spreadsheet would
run as a formula (a path starting with ``=``) gets a ``'`` in front (``text.spreadsheet_cell``), which
``ramtag eval``'s reader of labels CSVs takes off again.

``FORMATS`` is the one list: the command line's choices, the extensions ``--out`` is recognised by,
which formats can be written to a stream and which can be added to by a later run all come from it.
A new format is a writer class and one row of the table.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, TextIO

from ..atomic import AtomicFile
from ..errors import OutputError, UsageError
from ..text import spreadsheet_cell

# Parquet key-value metadata key holding the run's provenance (``Tagger.metadata()`` as JSON).
METADATA_KEY = "ramtag"

if TYPE_CHECKING:  # pyarrow is imported by the writers that need it, not by the table
    import pyarrow as pa

LIST_SEPARATOR = "|"
# A row group is flushed at this many bytes of buffered data (or ROW_GROUP_ROWS rows), which
# bounds memory however many images a run has; all_scores rows are large, plain rows small.
ROW_GROUP_BYTES = 32 * 1024 * 1024
ROW_GROUP_ROWS = 50_000


class Sink(Protocol):
    def write(self, batch: pa.RecordBatch) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Stop without finishing the output (it is about to be deleted)."""


class ParquetSink:
    """Parquet in bounded row groups, written as batches arrive."""

    def __init__(self, where: str | Path | BinaryIO, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

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
            import pyarrow as pa

            table = pa.Table.from_batches(self._pending, schema=self.schema)
            self._writer.write_table(table, row_group_size=max(self._rows, 1))
        self._pending, self._rows, self._bytes = [], 0, 0

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def abort(self) -> None:
        import pyarrow as pa

        self._pending = []
        try:
            self._writer.close()
        except (OSError, pa.ArrowException):
            pass  # the file is being thrown away; the error that got us here is the one to report


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _values(column: pa.Array) -> list[Any]:
    """``column.to_pylist()``, but microsecond UTC times (``file_modified``) are converted here:
    pyarrow imports pandas to convert zoned times (0.4-0.6 s the first time)."""
    import pyarrow as pa

    kind = column.type
    if pa.types.is_timestamp(kind) and kind.unit == "us" and kind.tz in ("UTC", "+00:00"):
        times = column.cast(pa.int64()).to_pylist()
        return [None if us is None else _EPOCH + timedelta(microseconds=us) for us in times]
    return column.to_pylist()


def _rows(batch: pa.RecordBatch) -> Iterator[tuple[Any, ...]]:
    return zip(*(_values(column) for column in batch.columns))


def python_rows(batch: pa.RecordBatch) -> list[dict[str, Any]]:
    """``batch.to_pylist()`` without pyarrow's pandas import (see ``_values``)."""
    return [dict(zip(batch.schema.names, row)) for row in _rows(batch)]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return LIST_SEPARATOR.join(_text(item) for item in value)
    if isinstance(value, float):
        return _float32_text(value)
    return str(value)


def _csv_cell(value: Any) -> str:
    text = _text(value)
    if isinstance(value, str) or (isinstance(value, list) and value and isinstance(value[0], str)):
        return spreadsheet_cell(text)
    return text  # numbers, times and lists of numbers never start a formula's way


def _float32_text(value: float) -> str:
    """The shortest text that reads back as the same float32 (numpy's; imported here, not with the
    table of formats the command line reads)."""
    import numpy as np

    return str(np.float32(value))


def _json_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, float):  # all floats in the schema are float32: keep their shortest form
        return float(_float32_text(value))
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class CsvSink:
    """CSV with a header row; pandas reads it back unchanged but for the ``'`` before formula-like
    text, and spreadsheets show it without running anything."""

    def __init__(self, stream: TextIO, schema: pa.Schema) -> None:
        self._stream = stream
        self._csv = csv.writer(stream)
        self._csv.writerow(schema.names)

    def write(self, batch: pa.RecordBatch) -> None:
        self._csv.writerows([_csv_cell(value) for value in row] for row in _rows(batch))

    def close(self) -> None:
        self._stream.flush()

    def abort(self) -> None:
        pass


class JsonLinesSink:
    """One JSON object per image and line: what a pipe to ``jq`` or another program wants."""

    def __init__(self, stream: TextIO, schema: pa.Schema) -> None:
        self._stream = stream

    def write(self, batch: pa.RecordBatch) -> None:
        for row in python_rows(batch):
            line = json.dumps({k: _json_value(v) for k, v in row.items()}, ensure_ascii=False)
            self._stream.write(line + "\n")
        self._stream.flush()

    def close(self) -> None:
        self._stream.flush()

    def abort(self) -> None:
        pass


@dataclass(frozen=True)
class Format:
    """One output format: how files of it are named, written, and whether a re-run can add to one."""

    name: str
    label: str  # as messages name it
    extensions: tuple[str, ...]
    writer: Callable[[Any, pa.Schema], Sink]  # (binary stream or path for Parquet, text stream else, schema)
    binary: bool
    can_continue: bool  # readable back by ramtag, so a re-run adds to an existing file


FORMATS: dict[str, Format] = {
    "parquet": Format("parquet", "Parquet", (".parquet", ".pq"), ParquetSink, binary=True, can_continue=True),
    "csv": Format("csv", "CSV", (".csv",), CsvSink, binary=False, can_continue=False),
    "jsonl": Format("jsonl", "JSON Lines", (".jsonl", ".ndjson"), JsonLinesSink, binary=False, can_continue=False),
}


def listing(words: list[str], last: str = "or") -> str:
    """``a, b or c``: the words of a message that lists choices."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


EXTENSIONS = listing([f.extensions[0] for f in FORMATS.values()])  # ".parquet, .csv or .jsonl"


def not_added_to(dest: Path) -> str:
    """Why an existing output of a format ramtag cannot read back is not added to."""
    addable = listing([f.label for f in FORMATS.values() if f.can_continue])
    return f"{dest} already exists; pass --overwrite to replace it (only {addable} outputs can be added to)"


def format_for(path: Path, explicit: str | None = None) -> str:
    """The output format: ``explicit`` when given, else from the file's extension."""
    suffix = path.suffix.lower()
    found = next((f.name for f in FORMATS.values() if suffix in f.extensions), None)
    if explicit is not None:
        if explicit not in FORMATS:
            raise UsageError(f"unknown format {explicit!r}; use one of {', '.join(FORMATS)}")
        if found not in (None, explicit):  # a .parquet file of CSV would be refused by the next run
            raise UsageError(f"--out {path} is named as {FORMATS[found].label} but --format is {explicit}; "
                             f"name it {FORMATS[explicit].extensions[0]}, or leave out --format")
        return explicit
    if found is None:
        raise UsageError(f"{path}: cannot tell the format from the extension; name it {EXTENSIONS}, or pass --format")
    return found


def text_sink(fmt: str, stream: TextIO, schema: pa.Schema) -> Sink:
    """A writer of ``fmt`` onto a text stream (stdout); Parquet needs a file."""
    chosen = FORMATS.get(fmt)
    if chosen is None or chosen.binary:
        raise UsageError(f"{fmt} cannot be written to a text stream; give --out FILE")
    return chosen.writer(stream, schema)


class OutputFile:
    """A new version of ``dest`` written beside it and renamed onto it only when complete.

    Until ``commit()``, ``dest`` is untouched: absent, or the previous complete version.
    """

    def __init__(self, dest: Path, fmt: str, schema: pa.Schema, *, tmp: Path | None = None) -> None:
        self.dest = dest
        self._pending = AtomicFile(dest, tmp=tmp)
        self.tmp = self._pending.path
        try:
            self._file = open(self.tmp, "wb")
        except OSError as exc:
            raise OutputError(f"{dest}: cannot write here ({exc.strerror})") from None
        chosen = FORMATS[fmt]
        self._text = None if chosen.binary else io.TextIOWrapper(self._file, encoding="utf-8", newline="")
        self.sink: Sink = chosen.writer(self._text or self._file, schema)

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
