"""A re-run onto an output that holds rows already: which images to tag again, which rows to keep.

``RowIndex`` holds, for every key of the previous output and of the parts of an unfinished run, one
integer: a fingerprint of the file's stamp (``inputs.identity``), whether the row is an error, and
whether this run found the file. For each image a run finds it decides (``decide``):

- ``NEW``: no row yet: tagged;
- ``UNCHANGED``: the row is of this very file (same size and time, or same SHA-256): skipped;
- ``CHANGED``: the file is not the one the row was made from: tagged, its row replaced;
- ``RETRY``: the row is an error: tagged again (unless ``Rerun.retry_errors`` is off: then only
  when the file changed);
- ``HASH``: with ``--content-hash``, the row has no SHA-256 yet (made without it): its content cannot
  be vouched for, so it is tagged again and its hash recorded.

A row with nothing to compare (written by a version before the stamps, or of a URL) counts as
unchanged. Once the run has walked everything, the rows of files it did not find are looked for on
disk (``stale``): under a folder this run walked and gone, they are reported, and removed with
``--prune``; so are the rows of members no longer in a tar shard this run read to its end. Rows of
folders and shards the run was not given, and of URLs, are never touched.

Tar shards read are remembered, with their version when read to their end (``shardversions``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..inputs.shards import InMemory, hidden_name
from .schema import stamps_of

if TYPE_CHECKING:
    import pyarrow as pa

    from ..inputs import ImageRef
    from ..inputs.identity import Stamp

NEW, UNCHANGED, CHANGED, RETRY, HASH = "new", "unchanged", "changed", "retried", "hashed"
_SEEN, _ERROR, _WALKED = 1, 2, 4  # the low bits of an entry; then the fingerprint's kind (2 bits), then it
_SHIFT = 5
_STAT, _SHA = 1, 2
_MASK = (1 << 60) - 1


def _nowhere(key: str) -> str | None:
    return None


@dataclass(frozen=True)
class Rerun:
    """What a run does with the rows an output holds already: error rows are tagged again unless
    ``retry_errors`` is off; rows of files gone from the folders this run walks (``file_of`` says
    where a key's file is, ``None`` for keys outside them) are counted, and removed with ``prune``;
    ``by_content``: files are compared by their SHA-256 where the row has one."""

    retry_errors: bool = True
    prune: bool = False
    by_content: bool = False
    file_of: Callable[[str], str | None] = _nowhere
    whole_shards: bool = True  # no --include/--exclude: a shard read to its end yields every member
    shard_folders: frozenset[str] = frozenset()  # folders given (real paths): a shard deleted there is gone
    hidden: bool = False  # --hidden: a shard's hidden members are read too


def fingerprint(stamp: Stamp | None, by_content: bool) -> tuple[int, int]:
    """(kind, value) of what a row, or a file found now, is compared by; kind 0: nothing to go by."""
    if stamp is None:
        return 0, 0
    if by_content and stamp.sha256:
        return _SHA, int(stamp.sha256[:15], 16)
    if stamp.size is not None and stamp.mtime_us is not None:
        return _STAT, hash((stamp.size, stamp.mtime_us)) & _MASK
    return 0, 0


class RowIndex:
    """The keys an output holds, what their rows were made from, and which part has the newest."""

    def __init__(self, rerun: Rerun) -> None:
        self.rerun = rerun
        self.entries: dict[str, int] = {}
        self.latest: dict[str, int] = {}  # key -> number (from 1) of the part holding its newest row
        self.shards: dict[str, bool] = {}  # tar shards this run read: name -> read to the end
        self.members: dict[str, int] = {}  # tar shards this run read: name -> members found

    def __len__(self) -> int:
        return len(self.entries)

    def remember(self, batch: pa.RecordBatch, part: int | None = None) -> None:
        """Index the rows of ``batch``: of the previous output, or of part number ``part``."""
        by_content = self.rerun.by_content
        keys = batch.column("path").to_pylist()
        errors = batch.column("error").is_valid().to_pylist()
        names = batch.schema.names
        walked = batch.column("root").is_valid().to_pylist() if "root" in names else [False] * len(keys)
        for key, error, found, stamp in zip(keys, errors, walked, stamps_of(batch)):
            kind, value = fingerprint(stamp, by_content)
            self.entries[key] = value << _SHIFT | kind << 3 | (_ERROR if error else 0) | (_WALKED if found else 0)
            if part is not None:
                self.latest[key] = part

    def walked(self, key: str) -> bool:
        return bool(self.entries.get(key, 0) & _WALKED)

    def found(self, key: str) -> bool:
        """This run found the file of ``key``."""
        return bool(self.entries.get(key, 0) & _SEEN)

    def is_error(self, key: str) -> bool:
        return bool(self.entries.get(key, 0) & _ERROR)

    def decide(self, ref: ImageRef) -> str:
        """What this run does with the image ``ref``: NEW, UNCHANGED, CHANGED or RETRY. A tar member
        now cut off or damaged (its shard re-downloaded badly) whose row is a success: CHANGED, so
        its error row says so, as a photo damaged since would be tagged again and fail."""
        entry = self.entries.get(ref.key)
        if entry is None:
            return NEW
        source = getattr(ref, "source", None)  # (a record, for what --embed rewrote, has none)
        if not entry & _ERROR and getattr(source, "kind", None) in ("truncated", "corrupt"):
            return CHANGED
        kind, value = entry >> 3 & 3, entry >> _SHIFT
        if entry & _ERROR and (self.rerun.retry_errors or isinstance(source, InMemory)):
            return RETRY  # (a member of a shard read again, read whole now: its shard changed, as a file would)
        if kind == 0:
            return UNCHANGED  # nothing recorded to compare with
        if kind == _STAT and self.rerun.by_content and ref.stamp is not None and ref.stamp.sha256:
            return HASH if not entry & _ERROR else self._compared(ref, kind, value)
        return self._compared(ref, kind, value)

    def _compared(self, ref: ImageRef, kind: int, value: int) -> str:
        found_kind, found = fingerprint(ref.stamp, kind == _SHA)
        if found_kind != kind:
            return UNCHANGED  # cannot be compared now (a file that cannot be read fails at decoding)
        return UNCHANGED if found == value else CHANGED

    def saw(self, key: str) -> None:
        """This run found the file of ``key``."""
        entry = self.entries.get(key)
        if entry is not None:
            self.entries[key] = entry | _SEEN

    def read_shard(self, key: str, whole: bool = True) -> None:
        """This run found the tar member ``key`` (``shard.tar/member``); ``whole`` False: the shard
        could not be read to its end (damaged, cut off, unreadable: its other members may be there)."""
        name, _, member = key.partition("/")
        self.shards[name] = self.shards.get(name, True) and bool(member) and whole and self.rerun.whole_shards
        self.members[name] = self.members.get(name, 0) + bool(member)

    def wrote(self, key: str, part: int) -> None:
        self.latest[key] = part

    def stale(self) -> list[str]:
        """Keys of rows whose file this run did not find and which is gone: under a folder this run
        walked, no longer there (a file left out by ``--exclude``, or hidden, still exists)."""
        file_of, shards, found = self.rerun.file_of, self.shards, []
        for key, entry in self.entries.items():
            if entry & _SEEN:  # (rows in the parts of an unfinished run too: a file gone since is gone)
                continue
            if shards and shards.get(key.partition("/")[0]):  # a member of a shard read to its end this
                if self.rerun.hidden or not hidden_member(key):  # time: not in it any more (a hidden one
                    found.append(key)  # was only left out, without --hidden)
                continue
            where = file_of(key) if entry & _WALKED else None  # only rows found in a folder input
            if where is not None and gone(where):
                found.append(key)
        return found


def hidden_member(key: str) -> bool:
    """A tar member's key (``shard.tar/member``) naming a hidden file or folder."""
    return hidden_name(key.partition("/")[2])


def gone(path: str) -> bool:
    """Deleted: not there (a folder that cannot be read is not proof of anything)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False
