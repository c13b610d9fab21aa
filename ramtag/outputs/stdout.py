"""A run without ``--out``: results on stdout, a table on a terminal, JSON Lines (or CSV) when piped."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import OutputError, UsageError
from ..text import terminal_text
from .base import RowOutput
from .formats import python_rows, text_sink

if TYPE_CHECKING:
    import pyarrow as pa

    from ..inputs import ImageRef
    from ..pipeline import ImageRecord


class StdoutOutput(RowOutput):
    """Rows on stdout: a table on a terminal, JSON Lines (or ``fmt``) otherwise. Nothing to resume.

    Alone it wants every image; beside sidecars (``everything=False``) it shows the images the
    sidecars needed, without making a re-run tag the others again.
    """

    def __init__(self, fmt: str | None, schema: pa.Schema, lang: str, *, everything: bool = True) -> None:
        super().__init__(schema)
        self.everything = everything
        if sys.stdout is None:  # started with stdout closed (`>&-`, some daemons)
            raise UsageError("stdout is closed: give --out FILE for the results")
        if fmt is None and sys.stdout.isatty():
            self.sink: Any = TerminalTable(Console(highlight=False), lang)
        else:
            with _writing():  # CSV's header is written at once (unbuffered: PYTHONUNBUFFERED, python -u)
                self.sink = text_sink(fmt or "jsonl", sys.stdout, schema)

    def needs(self, item: ImageRef | ImageRecord) -> bool:
        return self.everything

    def write_records(self, records: list[ImageRecord]) -> list[ImageRecord]:
        if not records:
            return records
        from .schema import to_record_batch

        self.write(to_record_batch(records, self.schema))
        return records

    def write(self, batch: pa.RecordBatch) -> None:
        with _writing():
            self.sink.write(batch)

    def save(self) -> None:
        with _writing():
            self.sink.close()


@contextmanager
def _writing() -> Iterator[None]:
    """A full disk or a failing device behind a redirected stdout is one line, like a full --out."""
    try:
        yield
    except BrokenPipeError:
        raise  # the reader went away (`| head`): the command line ends quietly
    except OSError as error:
        raise OutputError(f"cannot write the results to stdout ({error.strerror or error}); "
                          "free some space, or give --out FILE on another disk") from error


class TerminalTable:
    """A readable table for someone who tagged a few photos at a terminal."""

    ROWS_PER_TABLE = 200

    def __init__(self, console: Console, lang: str) -> None:
        self.console = console
        self.lang = lang
        self.rows: list[dict[str, Any]] = []

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows.extend(python_rows(batch))
        if len(self.rows) >= self.ROWS_PER_TABLE:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        table = Table("path", "tags", "size")
        table.columns[0].overflow = table.columns[1].overflow = "fold"
        for row in self.rows:
            if row["error"] is not None:
                tags = f"[red]error: {escape(terminal_text(row['error']))}[/]"  # said in words too: NO_COLOR
                size = ""
            else:
                names = {"en": row["tags"], "zh": row.get("tags_zh"), "both": None}[self.lang]
                if names is None:
                    names = [f"{en} {zh}" for en, zh in zip(row["tags"], row["tags_zh"])]
                tags = ", ".join(f"{escape(n)} [dim]{s:.2f}[/]" for n, s in zip(names, row["scores"]))
                size = f"{row['width']}x{row['height']}"
            table.add_row(escape(terminal_text(row["path"])), tags, size)  # a name may hold escape sequences
        self.console.print(table)
        self.rows = []

    def close(self) -> None:
        self._flush()
