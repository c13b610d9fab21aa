"""``--files-from`` lists: one path per line, or NUL-separated as ``find -print0`` writes them, read
as they arrive (a list of millions, or a pipe whose writer is still at work, never waits whole).
"""

from __future__ import annotations

import codecs
import itertools
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from ..errors import UsageError


def listed_paths(files_from: str | Path, stdin: TextIO | None) -> Iterator[str]:
    """The paths of the list ``files_from`` (``-``: ``stdin``, by default ``sys.stdin``)."""
    if str(files_from) == "-":
        yield from _list_entries(stdin if stdin is not None else sys.stdin)
        return
    try:
        handle = open(files_from, "rb")
    except OSError as error:
        raise UsageError(f"cannot read --files-from list {files_from}: {error.strerror}") from error
    with handle:
        yield from _list_entries(handle)


# A list is NUL-separated (``find -print0``) when a NUL comes this early: no path is longer.
_NUL_WITHIN = 64 * 1024
_PIECE = 16 * 1024  # read at most this much at a time, so a list of millions streams
_LINE_END = re.compile(r"\r\n|\r|\n")


def _list_entries(stream: TextIO | BinaryIO) -> Iterator[str]:
    """The paths of a list: NUL-separated names as they are (the only way to list a name with a
    newline in it), else non-blank, non-comment lines with surrounding whitespace removed.

    A file is looked at for a NUL up to ``_NUL_WITHIN``; a pipe, whose writer may still be at
    work, only as far as what has arrived with its first line end."""
    pieces = _pieces(stream)
    waits = not _can_read_ahead(stream)
    head: list[str] = []
    size = 0
    for piece in pieces:
        head.append(piece)
        size += len(piece)
        if "\0" in piece or size >= _NUL_WITHIN or (waits and _LINE_END.search(piece)):
            break
    text = itertools.chain(head, pieces)
    if any("\0" in piece for piece in head):
        yield from (name for name in _records(text, lambda chunk: chunk.split("\0")) if name)
        return
    for raw in _records(text, _LINE_END.split):
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line


def _pieces(stream: TextIO | BinaryIO) -> Iterator[str]:
    """The text of a list as it arrives, bytes that are not UTF-8 kept as surrogates so that such
    names still round-trip on POSIX; text already decoded (no bytes beneath) is read as it is."""
    binary = getattr(stream, "buffer", stream)
    if not hasattr(binary, "read1"):
        yield from iter(lambda: stream.readline(_PIECE), "")  # type: ignore[arg-type]
        return
    decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
    while chunk := binary.read1(_PIECE):
        yield decoder.decode(chunk)
    yield decoder.decode(b"", final=True)


def _can_read_ahead(stream: TextIO | BinaryIO) -> bool:
    """Whether reading on costs no wait: a file (or text in memory), not a pipe or a terminal."""
    try:
        return stream.seekable()
    except (OSError, ValueError):
        return False


def _records(pieces: Iterable[str], split: Callable[[str], list[str]]) -> Iterator[str]:
    """The records of text read in pieces, each whole although a piece may end inside one."""
    rest = ""
    for piece in pieces:
        *done, rest = split(rest + piece)
        yield from done
    if rest:
        yield rest
