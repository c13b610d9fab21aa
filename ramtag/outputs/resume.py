"""A resumable output file: results made durable in part files as they come, a journal commits them.

Beside ``tags.parquet`` a run keeps ``tags.parquet.parts/``:

- ``lock``: held (``flock``) by the run writing here, so a second run on the same output refuses;
- ``settings.json``: what the results depend on, checked when a run resumes;
- ``000001.parquet``, ...: parts, in the output schema, each written under a temporary name,
  fsynced and renamed;
- ``journal``: one line per part, appended and fsynced only once the part is on disk. A part
  without a line is debris from a crash and is deleted; a line always names a complete part.

When the run ends, the previous output (for an incremental run) and the parts are streamed into a
new version that atomically replaces ``--out``, so ``--out`` is at every moment absent, the previous
complete version, or the new one. That version is first written inside the folder, and a
``finish`` line is journaled once it exists: a run that finds the line but not the file knows the
rename happened (the parts are in the output already); otherwise it simply finishes again. After a crash, ``kill -9`` or Ctrl-C at any point, the same
command continues: images already in a part or in the output are skipped, the rest tagged once.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import OutputError
from .schema import read_metadata
from ..atomic import replace_durably
from .tabular import OutputFile, ParquetSink

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second run is not refused there
    fcntl = None  # type: ignore[assignment]

# What makes two runs' results comparable: any difference and the rows cannot share one file.
RESULT_SETTINGS = (
    "model_kind", "checkpoint_sha256", "vocabulary", "thresholds", "input_size", "precision", "top_k",
    "draft_decode",
)
SAVE_EVERY = 1000
SAVE_EVERY_S = 60.0
_READ_BATCH_ROWS = 8192


def parts_dir(dest: Path) -> Path:
    return dest.with_name(dest.name + ".parts")


def settings_of(schema: pa.Schema) -> dict[str, Any]:
    """The settings an output's rows depend on: the result-changing metadata and the columns."""
    metadata = read_metadata(schema) or {}
    settings = {key: metadata.get(key) for key in RESULT_SETTINGS}
    settings["columns"] = schema.names
    return settings


def hold_lock(path: Path, dest: Path) -> int:
    """Take the lock file ``path`` of the output ``dest`` for this run (a file descriptor to keep
    open), or refuse in words when another run holds it. No lock where there is no ``fcntl``.

    A run that finishes removes its lock file, so a lock taken on a file unlinked meanwhile would
    protect nothing: the inode check makes that case a refusal too.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = os.fstat(fd).st_ino == os.stat(path).st_ino  # not removed meanwhile
    except (BlockingIOError, FileNotFoundError):
        held = False
    if not held:
        os.close(fd)
        raise OutputError(
            f"another ramtag run is writing {dest} (it holds {path}); wait for it to finish or stop it first"
        )
    return fd


def differences(found: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """Each differing setting in words: what the existing results used, what this run would use."""
    return [
        f"{key} ({_brief(found.get(key))} there, {_brief(wanted.get(key))} now)"
        for key in (*RESULT_SETTINGS, "columns", "previous_output")
        if found.get(key) != wanted.get(key)
    ]


def _brief(value: Any) -> str:
    if isinstance(value, list) and len(value) > 8:
        return f"{len(value)} values starting {', '.join(map(str, value[:3]))}"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, str) and len(value) > 16:  # a sha256
        return value[:12] + "…"
    return str(value)


class ResumableOutput:
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
    ) -> None:
        self.dest = dest
        self.fmt = fmt
        self.schema = schema
        self.overwrite = overwrite
        self.save_every = save_every
        self.save_every_s = save_every_s
        self.folder = parts_dir(dest)
        self.parts: list[tuple[str, int]] = []  # committed (name, rows), in order
        self.done: set[str] = set()  # keys already in a part or in the previous output
        self.builds_on = False  # whether the rows of an existing --out are kept
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._saved_at = time.monotonic()
        self._lock_fd: int | None = None
        try:
            self.folder.mkdir(exist_ok=True)
            self._lock()
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot create it ({exc.strerror})") from None
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------------

    def _lock(self) -> None:
        self._lock_fd = hold_lock(self.folder / "lock", self.dest)

    def _recover(self) -> None:
        journal = self._read_journal()
        finishing = [entry for kind, entry in journal if kind == "finish"]
        if finishing and not (self.folder / finishing[-1]).exists():
            journal = []  # the last run's final rename happened: its parts are in --out already
        # Whether the rows of an existing --out belong to this run: part of what must match.
        self.builds_on = self.dest.exists() and not self.overwrite
        settings = {**settings_of(self.schema), "previous_output": self.builds_on}
        parts = [entry.split(" ") for kind, entry in journal if kind == "part"]
        if parts:
            changed = differences(self._read_json(self.folder / "settings.json"), settings)
            if changed and not self.overwrite:
                raise OutputError(
                    f"{self.folder} holds an unfinished run with other settings: {'; '.join(changed)}. "
                    "Run it again with its settings to finish it, or pass --overwrite to start over"
                )
            if changed:
                parts = []
        self.parts = [(name, int(rows)) for name, rows in parts]
        self._sweep()  # before anything new is written: debris, or the parts of a finished run
        self._write_json(self.folder / "settings.json", settings)
        self._rewrite_journal()
        for name, _ in self.parts:
            self.done.update(pq.read_table(self.folder / name, columns=["path"]).column("path").to_pylist())
        if self.builds_on:
            self._adopt_previous()

    def _read_journal(self) -> list[tuple[str, str]]:
        """Complete, well-formed lines whose part exists; a torn last line (a crash) is dropped."""
        path = self.folder / "journal"
        if not path.exists():
            return []
        entries = []
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
            kind, _, entry = line.partition(" ")
            name, _, rows = entry.partition(" ")
            if kind == "part" and rows.isdigit() and (self.folder / name).is_file():
                entries.append((kind, entry))
            elif kind == "finish" and entry:
                entries.append((kind, entry))
        return entries

    def _adopt_previous(self) -> None:
        """An incremental run: keep the rows of the complete output already at ``dest``."""
        redo = "pass --overwrite to replace it"
        if self.fmt != "parquet":
            raise OutputError(f"{self.dest} already exists; {redo} (only Parquet outputs can be added to)")
        try:
            previous = pq.ParquetFile(self.dest)
        except (OSError, pa.ArrowException):
            raise OutputError(f"{self.dest} already exists and is not a Parquet file; {redo}") from None
        if read_metadata(previous.schema_arrow) is None:
            raise OutputError(f"{self.dest} already exists and was not written by ramtag; {redo}")
        changed = differences(settings_of(previous.schema_arrow), settings_of(self.schema))
        if changed:
            raise OutputError(
                f"{self.dest} was made with other settings: {'; '.join(changed)}. "
                f"Use the same settings to add new images to it, or {redo}"
            )
        for batch in previous.iter_batches(batch_size=_READ_BATCH_ROWS, columns=["path"]):
            self.done.update(batch.column(0).to_pylist())

    def _sweep(self) -> None:
        """Delete what is not a committed part: crash debris, parts of a finished or dropped run."""
        keep = {"lock", *(name for name, _ in self.parts)}
        for path in self.folder.iterdir():
            if path.name not in keep:
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
        name = f"{len(self.parts) + 1:06d}.parquet"
        tmp = self.folder / f"{name}.tmp"
        try:
            sink = ParquetSink(tmp, self.schema)
            for batch in self._pending:
                sink.write(batch)
            sink.close()
            replace_durably(tmp, self.folder / name)
            self._append_journal(f"part {name} {self._pending_rows}")
        except OSError as exc:
            raise OutputError(f"{self.folder}: cannot save results ({exc.strerror or exc})") from None
        self.parts.append((name, self._pending_rows))
        self._pending, self._pending_rows = [], 0

    @property
    def saved_rows(self) -> int:
        return sum(rows for _, rows in self.parts)

    def finish(self) -> None:
        """Write the complete output and put it in place; then the parts folder goes."""
        self.save()
        if self.builds_on and not self.parts:
            return  # nothing new: the output already is complete
        # The file exists before the journal says "finish": so, after a crash, a "finish" line
        # whose file is gone means the rename below happened.
        output = OutputFile(self.dest, self.fmt, self.schema, tmp=self.folder / "final.tmp")
        try:
            self._append_journal(f"finish {output.tmp.name}")
            if self.builds_on:
                self._copy(self.dest, output)
            for name, _ in self.parts:
                self._copy(self.folder / name, output)
        except BaseException as exc:
            output.discard()
            if isinstance(exc, OSError):
                raise OutputError(f"{self.dest}: cannot write it ({exc.strerror or exc})") from None
            raise
        output.commit()
        for name, _ in self.parts:
            (self.folder / name).unlink()
        self.parts = []

    def _copy(self, source: Path, output: OutputFile) -> None:
        for batch in pq.ParquetFile(source).iter_batches(batch_size=_READ_BATCH_ROWS):
            output.write(batch)

    # -- small durable files ---------------------------------------------------------------------

    def _append_journal(self, line: str) -> None:
        with open(self.folder / "journal", "a", encoding="utf-8") as journal:
            journal.write(line + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def _rewrite_journal(self) -> None:
        tmp = self.folder / "journal.tmp"
        tmp.write_text("".join(f"part {name} {rows}\n" for name, rows in self.parts), encoding="utf-8")
        replace_durably(tmp, self.folder / "journal")

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    @staticmethod
    def _write_json(path: Path, value: dict[str, Any]) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
        replace_durably(tmp, path)

    def close(self) -> None:
        """Release the lock. The folder goes unless it holds saved parts (what a rerun resumes)."""
        if self._lock_fd is None:
            return
        if not any(path.suffix == ".parquet" for path in self.folder.iterdir()):
            shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> ResumableOutput:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
