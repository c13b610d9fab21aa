"""A Parquet dataset folder committed part by part: what ``ramtag run --engine ray`` writes.

Each unit of work (a tar shard, or a chunk of image files) becomes one part file at the top of the
folder, in the shared output schema with its ``ramtag`` metadata, so pandas, DuckDB, Spark and
pyarrow read the folder as one table. Beside the parts, ``_ramtag/`` (ignored by those readers,
like every name starting with ``_``) holds:

``lock``, ``settings.json`` and ``journal``, kept as for a local run's output (``journal``). The
journal says ``{"writing": name}`` before a part is renamed into place and ``{"part": name, "shard":
..., "rows": ...}`` once it is there and synced. A part is committed when its second entry exists and
its file does; a part announced but never committed is crash debris and is deleted, and so is a
``.<name>.ramtag.tmp`` file. Nothing else is ever deleted.

Each part is made on a Ray actor by the runner writing into a ``PartOutput``: the part's Parquet
bytes in memory, handed back whole, so only the driver writes the folder.

A re-run skips the shards (by name) and the image files (by key) of committed parts. A shard's part
records the shard file's size and modification time: a shard changed since (re-downloaded,
rewritten) is tagged again and its part replaced in one rename, so a reader sees the old rows or the
new ones, never both or neither. Deleting a part file redoes its unit.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import replace_durably
from ..errors import OutputError
from ..inputs.roots import Root, owner_index
from .base import RowOutput
from .formats import ParquetSink
from .journal import Journal, hold_lock, read_settings, write_settings
from .schema import differences, roots_in, settings_of, to_record_batch

if TYPE_CHECKING:
    from ..inputs import ImageRef
    from ..pipeline import ImageRecord


CONTROL = "_ramtag"
_TMP = ".ramtag.tmp"


@dataclass(frozen=True)
class Part:
    """One committed part: its file name, the shard it holds (``None``: image files), its rows."""

    name: str
    shard: str | None
    rows: int
    errors: int = 0
    version: str | None = None  # the shard's version when it was tagged (``inputs.versions.shard_version``)


class DatasetOutput:
    """The folder ``dest``, opened for a run whose rows follow ``settings`` (``settings_of``).

    Refuses a folder ramtag did not write (whatever ``overwrite`` says), and committed parts made
    with other settings unless ``overwrite``, which deletes ramtag's parts before anything new is
    written.
    """

    def __init__(self, dest: Path, settings: dict[str, Any], *, overwrite: bool = False) -> None:
        self.dest = dest
        self.settings = settings
        self.control = dest / CONTROL
        self.journal = Journal(self.control / "journal")
        self.parts: dict[str, Part] = {}
        self._lock_fd: int | None = None
        self._check_folder()
        self._created = not dest.exists()
        try:
            self.control.mkdir(parents=True, exist_ok=True)
            self._lock()
        except OSError as exc:
            raise OutputError(f"{dest}: cannot write here ({exc.strerror})") from None
        try:
            self._recover(overwrite)
        except BaseException:
            self.close()
            raise

    @classmethod
    def for_schema(cls, dest: Path, schema: Any, *, overwrite: bool = False) -> DatasetOutput:
        return cls(dest, settings_of(schema), overwrite=overwrite)

    # -- opening ---------------------------------------------------------------------------------

    def _check_folder(self) -> None:
        if self.dest.is_file() or (self.dest.exists() and not self.dest.is_dir()):
            raise OutputError(
                f"{self.dest} is a file; --engine ray writes a folder of Parquet parts: "
                "give --out a folder name that is new or empty"
            )
        if self.dest.is_dir() and not self.control.is_dir() and any(self.dest.iterdir()):
            raise OutputError(
                f"{self.dest} is a folder ramtag did not write (it has files and no {CONTROL}/); "
                "give --out a folder that is new or empty"
            )

    def _lock(self) -> None:
        self._lock_fd = hold_lock(self.control / "lock", self.dest)

    def _recover(self, overwrite: bool) -> None:
        committed, announced = self._read_journal()
        for name in announced - set(committed):  # renamed (or about to be), never committed
            (self.dest / name).unlink(missing_ok=True)
        for path in self.dest.iterdir():
            if path.name.startswith(".") and path.name.endswith(_TMP):
                path.unlink()
        parts = {name: part for name, part in committed.items() if (self.dest / name).is_file()}
        if parts:
            changed = differences(read_settings(self.control / "settings.json"), self.settings)
            if changed and not overwrite:
                raise OutputError(
                    f"{self.dest} holds results made with other settings: {'; '.join(changed)}. "
                    "Run with those settings to add to it, or pass --overwrite to start over"
                )
            if overwrite:
                for name in parts:
                    (self.dest / name).unlink()
                parts = {}
        self.parts = parts
        write_settings(self.control / "settings.json", self.settings)
        self.journal.rewrite([_entry(part) for part in self.parts.values()])

    def _read_journal(self) -> tuple[dict[str, Part], set[str]]:
        """Committed parts by name, and every name announced."""
        committed: dict[str, Part] = {}
        announced: set[str] = set()
        for entry in self.journal.read():
            try:
                if "writing" in entry:
                    announced.add(_safe_name(entry["writing"]))
                elif "part" in entry:
                    name = _safe_name(entry["part"])
                    version = entry.get("version")  # or as versions before it: a local shard's size and time
                    if version is None and "size" in entry:
                        version = f"{int(entry['size'])}:{int(entry['mtime_us'])}"
                    committed[name] = Part(name, entry.get("shard"), int(entry["rows"]), int(entry.get("errors", 0)),
                                           version if isinstance(version, str) else None)
            except (KeyError, TypeError, ValueError):
                continue  # not an entry of this folder's
        return committed, announced

    # -- what a run skips ------------------------------------------------------------------------

    @property
    def done_shards(self) -> dict[str, Part]:
        """The committed shards by name, with the part each is in."""
        return {part.shard: part for part in self.parts.values() if part.shard is not None}

    def done_keys(self) -> set[str]:
        """The keys in parts of image files (not shards): those files are not tagged again."""
        keys: set[str] = set()
        for part in self.parts.values():
            if part.shard is None:
                keys.update(pq.read_table(self.dest / part.name, columns=["path"]).column("path").to_pylist())
        return keys

    # -- writing ---------------------------------------------------------------------------------

    def part_name(self, shard: str | None) -> str:
        """A new part's file name: the shard's stem (``00012.tar`` → ``00012.parquet``), or the next
        free ``images-NNNNNN.parquet`` for image files."""
        if shard is not None:
            stem = shard.split(".", 1)[0].lstrip("._") or "shard"  # readers skip "_x" and ".x" files
            name, number = f"{stem}.parquet", 1
            while self._taken(name):
                number += 1
                name = f"{stem}-{number}.parquet"
            return name
        number = sum(part.shard is None for part in self.parts.values()) + 1
        while self._taken(f"images-{number:06d}.parquet"):
            number += 1
        return f"images-{number:06d}.parquet"

    def _taken(self, name: str) -> bool:
        return name in self.parts or (self.dest / name).exists()

    def commit(
        self, shard: str | None, data: bytes, rows: int, errors: int = 0, *, version: str | None = None,
    ) -> Part:
        """Put one part (Parquet bytes) in place; once this returns, a crash loses none of it. A shard
        committed before (changed since: ``version``) has its part replaced by the rename."""
        previous = self.done_shards.get(shard) if shard is not None else None
        name = previous.name if previous is not None else self.part_name(shard)
        tmp = self.dest / f".{name}{_TMP}"
        part = Part(name, shard, rows, errors, version)
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
            self.journal.append({"writing": name})
            replace_durably(tmp, self.dest / name)
            self.journal.append(_entry(part))
        except OSError as exc:
            raise OutputError(f"{self.dest}: cannot save results ({exc.strerror or exc})") from None
        self.parts[name] = part
        return part

    def close(self) -> None:
        """Release the lock. With nothing committed, what this run made goes again."""
        if self._lock_fd is None:
            return
        os.close(self._lock_fd)
        self._lock_fd = None
        if not self.parts and not _has_other_files(self.dest):
            shutil.rmtree(self.control, ignore_errors=True)
            if self._created:
                self.dest.rmdir()

    def __enter__(self) -> DatasetOutput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def dataset_roots(dest: Path) -> list[Root]:
    """The folders the image files of an existing dataset folder were keyed by (its newest part's)."""
    try:
        parts = sorted((p for p in dest.glob("*.parquet") if p.is_file()), key=lambda p: p.stat().st_mtime_ns)
    except OSError:
        return []
    return roots_in(reversed(parts))


def _entry(part: Part) -> dict[str, Any]:
    entry = {"part": part.name, "shard": part.shard, "rows": part.rows, "errors": part.errors}
    if part.version is not None:
        entry["version"] = part.version
    return entry


def _safe_name(name: str) -> str:
    """A part name from the journal, refused if it could point outside the folder."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise OutputError(f"the journal names an impossible part {name!r}; pass --overwrite to start over")
    return name


def _has_other_files(folder: Path) -> bool:
    return any(path.name != CONTROL for path in folder.iterdir())



class PartOutput(RowOutput):
    """One part of the dataset, built in memory where the runner tags its unit (a Ray actor).

    Its rows say which folder input a walked file came from (``root``, an index into ``roots``: the
    run's, as the schema records them), as the local engine's do."""

    def __init__(self, schema: pa.Schema, roots: Sequence[Root] = ()) -> None:
        super().__init__(schema)
        self._stream = pa.BufferOutputStream()
        self._sink = ParquetSink(self._stream, schema)
        self.rows = self.errors = 0
        self.data: bytes | None = None
        self._roots = list(roots)
        self._root_of: dict[str, int | None] = {}

    def needs(self, item: ImageRef | ImageRecord) -> bool:
        if getattr(item, "walked", False):  # a ref the runner asks about, found by walking a folder
            self._root_of[item.key] = owner_index(self._roots, item.key)
        return True

    def write_records(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        if records:
            roots = [self._root_of.pop(record.key, None) for record in records]
            self.write(to_record_batch(list(records), self.schema, roots))
        return list(records)

    def write(self, batch: pa.RecordBatch) -> None:
        self._sink.write(batch)
        self.rows += batch.num_rows
        self.errors += batch.num_rows - batch.column("error").null_count

    def finish(self) -> None:
        self._sink.close()
        self.data = self._stream.getvalue().to_pybytes()

    def discard(self) -> None:
        self._sink.abort()
