"""``ramtag run`` without ``--out``: a table on a terminal, JSON Lines or CSV when piped."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    import pyarrow as pa


class StdoutTarget:
    """Results on stdout: a table on a terminal, JSON Lines (or --format csv) otherwise."""

    dest = None
    done: frozenset[str] = frozenset()  # nothing to resume

    def __init__(self, fmt: str | None, schema: pa.Schema, lang: str) -> None:
        from ..outputs import text_sink

        if fmt is None and sys.stdout.isatty():
            self.sink = TerminalTable(Console(highlight=False), lang)
        else:
            self.sink = text_sink(fmt or "jsonl", sys.stdout, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self.sink.write(batch)

    def save(self) -> None:
        self.sink.close()

    def finish(self) -> None:
        self.sink.close()

    def __enter__(self) -> StdoutTarget:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


class TerminalTable:
    """A readable table for someone who tagged a few photos at a terminal."""

    ROWS_PER_TABLE = 200

    def __init__(self, console: Console, lang: str) -> None:
        self.console = console
        self.lang = lang
        self.rows: list[dict[str, Any]] = []

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows.extend(batch.to_pylist())
        if len(self.rows) >= self.ROWS_PER_TABLE:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        table = Table("path", "tags", "size")
        table.columns[0].overflow = table.columns[1].overflow = "fold"
        for row in self.rows:
            if row["error"] is not None:
                tags = f"[red]{escape(row['error'])}[/]"
                size = ""
            else:
                names = {"en": row["tags"], "zh": row.get("tags_zh"), "both": None}[self.lang]
                if names is None:
                    names = [f"{en} {zh}" for en, zh in zip(row["tags"], row["tags_zh"])]
                tags = ", ".join(f"{escape(n)} [dim]{s:.2f}[/]" for n, s in zip(names, row["scores"]))
                size = f"{row['width']}x{row['height']}"
            table.add_row(escape(row["path"]), tags, size)
        self.console.print(table)
        self.rows = []

    def close(self) -> None:
        self._flush()
