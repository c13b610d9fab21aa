"""The file a local run writes: results made durable in part files as they come, a journal commits
them, and the complete file is renamed into place at the end.

Beside ``tags.parquet`` a run keeps ``tags.parquet.parts/``:

- ``lock``: held (``flock``) by the run writing here, so a second run on the same output refuses;
- ``settings.json``: what the results depend on, checked when a run resumes;
- ``inputs.json``: what the run was given, so that a run continuing it with other inputs says so;
- ``000001.parquet``, ...: parts, in the output schema, each written under a temporary name,
  fsynced and renamed;
- ``journal`` (``journal.Journal``): one entry per part, appended and fsynced only once the part is
  on disk. A part without an entry is debris from a crash and is deleted.

A re-run onto an existing output builds on it (``Rerun`` says how): each image found is compared
with its row (``inputs.identity``): unchanged, it is skipped; new, changed, or an error row to retry,
it is tagged and its new row goes into a part. The index this needs holds one small integer per key
(never the rows themselves), so a million rows cost tens of megabytes.

When the run ends, the previous output (for an incremental run) and the parts are streamed into a
new version that atomically replaces ``--out``: rows replaced by newer ones (and, with ``--prune``,
rows of files gone from the folders this run walked) are left out on the way, so ``--out`` is at
every moment absent, the previous complete version, or the new one. That version is first written
inside the folder, and a ``finish`` line is journaled once it exists: a run that finds the line but
not the file knows the rename happened (the parts are in the output already); otherwise it simply
finishes again. After a crash, ``kill -9`` or Ctrl-C at any point, the same command continues:
images already in a part or in the output are skipped, the rest tagged once.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import replace_durably
from ..errors import OutputError
from ..inputs.roots import Root, owner_index, roots_from_metadata
from ..inputs.shards import RECORDED, InMemory, Unusable
from . import columns as arrow
from .base import RowOutput
from .formats import FORMATS, OutputFile, ParquetSink, not_added_to
from .journal import (
    Journal, check_parts_folder, hold_lock, junk_name, owned_name, parts_dir, read_settings, write_settings,
)
from .rerun import CHANGED, UNCHANGED, Rerun, RowIndex
from .shardversions import ShardVersions
from .schema import (
    IDENTITY_COLUMNS, conform, differences, read_metadata, roots_in, settings_of, to_record_batch, with_metadata,
)

if TYPE_CHECKING:
    from ..inputs import ImageRef
    from ..pipeline import ImageRecord

SAVE_EVERY = 1000
SAVE_EVERY_S = 60.0
_READ_BATCH_ROWS = 8192
_INDEXED = ("path", "error", *IDENTITY_COLUMNS)  # what the index of a re-run reads of each row


def _batches(source: Path, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """``source``'s rows in batches, with those of ``columns`` it has."""
    file = pq.ParquetFile(source)
    present = [name for name in columns if name in file.schema_arrow.names]
    yield from file.iter_batches(batch_size=_READ_BATCH_ROWS, columns=present)


def recorded_roots(dest: Path) -> list[Root]:
    """The folders an existing output was keyed by: an unfinished run's newest part first (it
    recorded what ``dest`` had, and its own new folders), then ``dest``."""
    folder = parts_dir(dest)
    sources = sorted(folder.glob("*.parquet"), reverse=True) if folder.is_dir() else []
    sources += [dest] if dest.is_file() else []
    return roots_in(sources)


class ResumableOutput(RowOutput):
    """Where ``ramtag run --out`` writes; see the module docstring for the on-disk protocol.

    Without ``overwrite``, an existing complete output at ``dest`` is built upon (its images are
    skipped and its rows kept); with it, that output is replaced when this run finishes.
    """

    def __init__(
        self,
        dest: Path,
        fmt: str,
        schema: pa.Schema,
        *,
        overwrite: bool = False,
        save_every: int = SAVE_EVERY,
        save_every_s: float = SAVE_EVERY_S,
        rerun: Rerun | None = None,
    ) -> None:
        super().__init__(schema)
        self.dest = dest
        self.fmt = fmt
        self.overwrite = overwrite
        self.rerun = rerun or Rerun()
        self._roots = roots_from_metadata(read_metadata(schema))  # the folder inputs, as recorded
        self.save_every = save_every
        self.save_every_s = save_every_s
        self.folder = parts_dir(dest)
        self.journal = Journal(self.folder / "journal")
        self.parts: list[tuple[str, int]] = []  # committed (name, rows), in order
        self.index = RowIndex(self.rerun)  # every key of the previous output and of the parts
        self.shard_versions = ShardVersions()  # tar shards it has rows of (``shardversions``)
        self.held = 0
        self.builds_on = False  # whether the rows of an existing --out are kept
        self.tally: Counter[str] = Counter()  # images written by this run, by decision (NEW...)
        self.kept_errors = 0  # error rows of earlier runs this run found and did not retry
        self.stale: list[str] = []  # keys of rows whose file is gone (known once finished)
        self.pruned = 0
        self._asked: dict[str, tuple[str, int | None]] = {}  # asked for, not written yet: decision, root
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._saved_keys = 0
        self._saved_at = time.monotonic()
        self._lock_fd: int | None = None
        check_parts_folder(self.folder)
        try:
            self.folder.mkdir(exist_ok=True)
            self._lock_fd = hold_lock(self.folder / "lock", self.dest)
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot create it ({exc.strerror})") from None
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    @property
    def resumed(self) -> int:
        return self.held

    @property
    def done(self) -> set[str]:
        """The keys this output holds (from earlier runs and the parts of this one)."""
        return set(self.index.entries) | set(self.index.latest)

    def needs(self, item: ImageRef | ImageRecord) -> bool:
        if hasattr(item, "result"):  # a record: whether this output asked for it
            return item.key in self._asked
        source = item.source  # type: ignore[union-attr]
        # RECORDED: a member of a shard unchanged since its row was written, not read this time
        decision = UNCHANGED if source is RECORDED else self.index.decide(item)  # type: ignore[arg-type]
        self.index.saw(item.key)
        if isinstance(source, (InMemory, Unusable)):
            self.index.read_shard(item.key, whole=not isinstance(source, Unusable) or source.kind == "too_large")
        if decision == UNCHANGED:
            self.kept_errors += self.index.is_error(item.key)  # with --keep-errors
            return False
        self._asked[item.key] = (decision, self.root_of(item.key) if item.walked else None)  # type: ignore[union-attr]
        return True

    def root_of(self, key: str) -> int | None:
        """The folder input (index into the recorded roots) a walked file's key belongs to."""
        return owner_index(self._roots, key)

    def counts(self, ref: ImageRef) -> bool:
        return self.index.decide(ref) != UNCHANGED  # no bookkeeping: called beside the run

    def write_records(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        rows, roots = [], []
        for record in records:
            if record.key in self._asked:
                decision, root = self._asked.pop(record.key)
                self.tally[decision] += 1
            elif self._rewritten(record):  # an unchanged image whose file --embed wrote into
                root = self.root_of(record.key) if self.index.walked(record.key) else None
            else:
                continue
            rows.append(record)
            roots.append(root)
        if rows:
            self.write(to_record_batch(rows, self.schema, roots))
        return list(records)

    def _rewritten(self, record: ImageRecord) -> bool:
        """A record this output did not ask for, of an image it holds, whose file an output before
        it changed (``--embed`` with its row unchanged: the row takes the file as written, or the next
        run would find it changed)."""
        return (record.result is not None and record.stamp is not None and record.key in self.index.entries
                and self.index.decide(record) == CHANGED)  # type: ignore[arg-type]

    # -- opening ---------------------------------------------------------------------------------

    def _recover(self) -> None:
        journal = self._complete(self.journal.read())
        finishing = [entry["finish"] for entry in journal if "finish" in entry]
        if finishing and not (self.folder / finishing[-1]).exists():
            journal = []  # the last run's final rename happened: its parts are in --out already
        # Whether the rows of an existing --out belong to this run: part of what must match.
        self.builds_on = self.dest.exists() and not self.overwrite
        settings = {**settings_of(self.schema), "previous_output": self.builds_on}
        parts = [(entry["part"], int(entry["rows"])) for entry in journal if "part" in entry]
        if parts:
            changed = differences(read_settings(self.folder / "settings.json"), settings)
            if changed and not self.overwrite:
                raise OutputError(
                    f"{self.folder} holds an unfinished run with other settings: {'; '.join(changed)}. "
                    "Run it again with its settings to finish it, pass --overwrite to start over, or delete "
                    f"{self.folder} to drop the unfinished run"
                    + (f" and keep {self.dest.name} as it is" if self.dest.exists() else "")
                )
            if changed:
                parts = []
        self.parts = parts
        self._their_inputs = read_settings(self.folder / "inputs.json") if parts else {}
        located = read_settings(self.folder / "shards.json") if parts else {}  # where the parts' shards were
        self._sweep()  # before anything new is written: debris, or the parts of a finished run
        write_settings(self.folder / "settings.json", settings)
        self.journal.rewrite([{"part": name, "rows": rows} for name, rows in self.parts])
        if self.builds_on:
            self._adopt_previous()
        self.shard_versions.resume(located)
        for number, (name, _) in enumerate(self.parts, start=1):  # newer than the previous output
            for batch in _batches(self.folder / name, _INDEXED):
                self.index.remember(batch, number)
        self.held = len(self.index)  # images this output holds from earlier runs
        self._saved_keys = len(self.index.latest)

    def continues_other_inputs(self, inputs: dict[str, Any]) -> dict[str, Any] | None:
        """The inputs of the unfinished run this one continues, when they differ from this run's
        ``inputs`` (that run's images not saved yet would be missing from ``--out``, unnoticed);
        this run's are recorded for the next."""
        write_settings(self.folder / "inputs.json", inputs)
        before = self._their_inputs
        return before if before and before != inputs else None

    def _complete(self, entries: list[dict]) -> list[dict]:
        """The entries that still hold: a part whose file is there, a finish with its file name."""
        kept = []
        for entry in entries:
            if "part" in entry and str(entry.get("rows", "")).isdigit() and self._is_part(entry["part"]):
                kept.append(entry)
            elif isinstance(entry.get("finish"), str) and entry["finish"]:
                kept.append(entry)
        return kept

    def _is_part(self, name: object) -> bool:
        return isinstance(name, str) and "/" not in name and (self.folder / name).is_file()

    def _adopt_previous(self) -> None:
        """An incremental run: keep the rows of the complete output already at ``dest``."""
        redo = "pass --overwrite to replace it"
        if not FORMATS[self.fmt].can_continue:
            raise OutputError(not_added_to(self.dest))
        try:
            previous = pq.ParquetFile(self.dest)
        except (OSError, pa.ArrowException):
            raise OutputError(f"{self.dest} already exists and is not a Parquet file; {redo}") from None
        if (metadata := read_metadata(previous.schema_arrow)) is None:
            raise OutputError(f"{self.dest} already exists and was not written by ramtag; {redo}")
        self.shard_versions = ShardVersions(metadata.get("shards"))
        changed = differences(settings_of(previous.schema_arrow), settings_of(self.schema))
        if changed:
            raise OutputError(
                f"{self.dest} was made with other settings: {'; '.join(changed)}. "
                f"Use the same settings to add new images to it, or {redo}"
            )
        for batch in _batches(self.dest, _INDEXED):
            self.index.remember(batch)

    def _sweep(self) -> None:
        """Delete what is not a committed part: crash debris, parts of a finished or dropped run."""
        keep = {"lock", *(name for name, _ in self.parts)}
        for path in self.folder.iterdir():
            if path.name not in keep and owned_name(path.name) and not path.is_dir():
                path.unlink()

    # -- writing ---------------------------------------------------------------------------------

    def write(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        due = time.monotonic() - self._saved_at >= self.save_every_s
        if self._pending_rows >= self.save_every or due:
            self.save()

    def save(self) -> None:
        """Make the pending rows durable as one more part; after this, a crash loses nothing."""
        self._saved_at = time.monotonic()
        if not self._pending_rows:
            return
        number = len(self.parts) + 1
        name = f"{number:06d}.parquet"
        tmp = self.folder / f"{name}.tmp"
        try:
            if located := self.shard_versions.located(self.index):
                write_settings(self.folder / "shards.json", located)
            sink = ParquetSink(tmp, self.schema)
            for batch in self._pending:
                sink.write(batch)
            sink.close()
            replace_durably(tmp, self.folder / name)
            self.journal.append({"part": name, "rows": self._pending_rows})
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot save results ({exc.strerror or exc})") from None
        self.parts.append((name, self._pending_rows))
        for batch in self._pending:
            for key in batch.column("path").to_pylist():
                self.index.wrote(key, number)
        self._pending, self._pending_rows = [], 0
        self._saved_keys = len(self.index.latest)

    @property
    def saved_rows(self) -> int:
        """Images the unfinished run's parts hold, each once: a row replaced since (a shard's error
        row, then its members' rows) is not counted again, as summing the parts' rows did."""
        return self._saved_keys

    def finish(self) -> None:
        """Write the complete output and put it in place; then the parts folder goes."""
        self.save()
        stale = self.index.stale() + (gone := self.shard_versions.gone(self.index))
        # A shard's error row (keyed by its name) once the shard was read again: its members' rows
        # (or a new error row) say how it went now, as a success replaces an image's error row.
        superseded = {name for name in self.index.shards if self.index.is_error(name) and not self.index.found(name)}
        self.stale = [key for key in stale if key not in superseded]
        dropped = (set(self.stale) if self.rerun.prune else set()) | superseded
        versions = self.shard_versions.to_record(self.index, gone) if FORMATS[self.fmt].can_continue else {}
        if self.builds_on and not self.parts and not dropped and versions == self.shard_versions.recorded:
            return  # nothing new: the output already is complete
        if versions:
            self.schema = with_metadata(self.schema, shards=versions)
        # The file exists before the journal says "finish": so, after a crash, a "finish" entry
        # whose file is gone means the rename below happened.
        output = OutputFile(self.dest, self.fmt, self.schema, tmp=self.folder / "final.tmp")
        try:
            self.journal.append({"finish": output.tmp.name})
            latest = self.index.latest
            if self.builds_on:
                self._copy(self.dest, output, lambda key: key not in latest and key not in dropped)
            for number, (name, _) in enumerate(self.parts, start=1):
                self._copy(self.folder / name, output, lambda key: latest.get(key) == number and key not in dropped)
        except BaseException as exc:
            output.discard()
            if isinstance(exc, OSError):
                raise OutputError(f"{self.dest}: cannot write it ({exc.strerror or exc})") from None
            raise
        output.commit()
        self.pruned = len(dropped)
        for name, _ in self.parts:
            (self.folder / name).unlink()
        self.parts = []

    def _copy(self, source: Path, output: OutputFile, keep: Callable[[str], bool]) -> None:
        """The rows of ``source`` whose key ``keep`` wants, in this output's schema."""
        for batch in pq.ParquetFile(source).iter_batches(batch_size=_READ_BATCH_ROWS):
            mask = [keep(key) for key in batch.column("path").to_pylist()]
            if not all(mask):
                batch = batch.filter(arrow.booleans(mask))
            if batch.num_rows:
                output.write(conform(batch, self.schema))

    def close(self) -> None:
        """Release the lock. The folder goes unless it holds saved parts (what a rerun resumes)."""
        self.index = RowIndex(self.rerun)  # memory back
        if self._lock_fd is None:
            return
        if not any(path.suffix == ".parquet" for path in self.folder.iterdir()):
            for path in self.folder.iterdir():
                if (owned_name(path.name) or junk_name(path.name)) and not path.is_dir():
                    path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # empty now, unless something was put there meanwhile
        os.close(self._lock_fd)
        self._lock_fd = None
