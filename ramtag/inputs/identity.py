"""What says that a file is still the one a row was made from: its size and modification time, and,
when asked, a SHA-256 of its content.

A re-run compares a file's ``Stamp`` with the one its row recorded: equal, the row stands; different,
the image is tagged again and its row replaced. Size and time cost one ``stat`` per file, so a
collection of a million files is checked in seconds; they miss a file rewritten with the same size
inside the same microsecond, and they see a change in a file only copied or touched. ``--content-hash``
adds the SHA-256 of every file, which then decides alone (and costs reading every file on every run).

A tar member's stamp is its size and time from the tar header. A file behind a URL has none (``None``:
its row, once written, is never thought changed).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .refs import ImageRef

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Stamp:
    """A file's size in bytes, its modification time in microseconds since 1970 (UTC), its SHA-256."""

    size: int | None = None
    mtime_us: int | None = None
    sha256: str | None = None


def stat_stamp(path: str | os.PathLike[str]) -> Stamp | None:
    """The size and time of a local file; ``None`` when it cannot be read (the decode says why)."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return Stamp(info.st_size, info.st_mtime_ns // 1000)


def content_sha256(path: str | os.PathLike[str]) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    except (OSError, ValueError):
        return None
    return digest.hexdigest()


def file_stamp(path: str | os.PathLike[str], *, content: bool = False, known: Stamp | None = None) -> Stamp | None:
    """A local file's stamp (``known`` when given), with its hash when ``content`` asks for one."""
    stamp = known if known is not None else stat_stamp(path)
    if stamp is not None and content and stamp.sha256 is None:
        stamp = replace(stamp, sha256=content_sha256(path))
    return stamp


def stamped(ref: ImageRef, *, content: bool = False) -> ImageRef:
    """``ref`` with its stamp: taken now for a local file (before it is read, so a change made while
    it is tagged shows on the next run), kept as found for a tar member; with ``content``, the hash."""
    if ref.source is not None:
        return ref
    stamp = file_stamp(ref.path, content=content, known=ref.stamp)
    return ref if stamp is ref.stamp else replace(ref, stamp=stamp)
