"""The bookkeeping of a resumable output: its journal, its lock and its settings file.

Both resumable outputs (the local run's file, ``file.py``; the Ray dataset folder, ``dataset.py``)
keep the same three files beside their results:

- ``journal``: JSON lines, each appended and fsynced before the step it records is relied on. A
  crash can tear only the last line, which has no newline yet; reading drops it. So a line always
  names a step that completed (a part renamed into place, a final file written).
- ``lock``: held (``flock``) by the run writing there, so a second run on the same output refuses.
- ``settings.json``: the result-changing settings the entries were made with, which a re-run must
  share (``schema.differences``).

``check_parts_folder``: a local run's folder (``tags.parquet.parts``) holding any other name but a
file browser's litter is someone else's, and refused: only the names a run writes are ever deleted.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..atomic import write_atomically
from ..errors import OutputError
from ..text import json_text

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; a second run is not refused there
    fcntl = None  # type: ignore[assignment]

Entry = dict[str, Any]


class Journal:
    """An append-only list of JSON entries that survives ``kill -9`` at any instant."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[Entry]:
        """Every complete entry, in order; a torn last line and lines that are not entries are dropped.

        Journals of earlier ramtag versions hold ``part NAME ROWS`` and ``finish NAME`` lines,
        read as ``{"part": NAME, "rows": ROWS}`` and ``{"finish": NAME}``, so their runs resume.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.split("\n")[:-1]:  # the piece after the last newline is torn (or empty)
            entry = _entry(line)
            if entry is not None:
                entries.append(entry)
        return entries

    def append(self, entry: Entry) -> None:
        """Add ``entry``; once this returns, it is on disk."""
        with open(self.path, "a", encoding="utf-8") as journal:
            journal.write(json_text(entry) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def rewrite(self, entries: list[Entry]) -> None:
        """Replace the journal with ``entries`` in one step (dropping what a restart made moot)."""
        text = "".join(json_text(e) + "\n" for e in entries)
        write_atomically(self.path, text, tmp=self.path.with_name(self.path.name + ".tmp"))


def _entry(line: str) -> Entry | None:
    if line.startswith("{"):
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        return entry if isinstance(entry, dict) else None
    kind, _, rest = line.partition(" ")  # the plain-text lines of earlier versions
    name, _, rows = rest.partition(" ")
    if kind == "part" and name and rows.isdigit():
        return {"part": name, "rows": int(rows)}
    if kind == "finish" and rest:
        return {"finish": rest}
    return None


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
        raise _held_elsewhere(dest, path)
    return fd


def _held_elsewhere(dest: Path, lock: Path) -> OutputError:
    return OutputError(f"another ramtag run is writing {dest} (it holds {lock}); wait for it to finish or stop it first")


def parts_dir(dest: Path) -> Path:
    """Where a local run keeps its parts until it finishes: ``tags.parquet.parts`` beside ``--out``."""
    return dest.with_name(dest.name + ".parts")


def check_unlocked(dest: Path) -> None:
    """Refuse at once, before the model loads, an output another run is writing (``hold_lock``
    takes the lock when the output opens; this only looks)."""
    path = parts_dir(dest) / "lock"
    if fcntl is None or not path.is_file():
        return
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return  # said when the output opens, if it matters
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _held_elsewhere(dest, path) from None
    finally:
        os.close(fd)  # (closing lets go of a lock taken here)


def read_settings(path: Path) -> dict[str, Any]:
    """The settings file, or ``{}`` when it is missing or unreadable (which then matches nothing)."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def write_settings(path: Path, settings: dict[str, Any]) -> None:
    write_atomically(path, json_text(settings), tmp=path.with_name(path.name + ".tmp"))


# What a run writes in its parts folder (each also under NAME.tmp first): nothing else is ever deleted there.
_OURS = re.compile(r"(lock|journal|settings\.json|inputs\.json|shards\.json|final|\d{6,}\.parquet)(\.tmp)?")


def owned_name(name: str) -> bool:
    return _OURS.fullmatch(name) is not None


def junk_name(name: str) -> bool:
    """What a file browser leaves in a folder it showed (Finder's .DS_Store and ._ files, Windows'
    Thumbs.db): never a run's, never a person's work; removed with the folder."""
    return name.startswith(".") or name.casefold() in ("thumbs.db", "desktop.ini")


def check_parts_folder(folder: Path) -> None:
    """A folder at the parts folder's name that holds anything a run does not write there is
    someone else's: refused, where it was emptied and removed."""
    try:
        entries = list(folder.iterdir())
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise OutputError(f"{folder}: cannot create it (a file of that name exists); move it away, "
                          "or choose another --out") from None
    except OSError as exc:
        raise OutputError(f"{folder}: cannot read it ({exc.strerror})") from None
    foreign = sorted(entry.name for entry in entries
                     if not (owned_name(entry.name) or junk_name(entry.name)) or entry.is_dir())
    if foreign:
        raise OutputError(f"{folder} holds files ramtag did not write (e.g. {foreign[0]}), where a run keeps its "
                          "results until it finishes: move them away, or choose another --out")
