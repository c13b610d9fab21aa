"""``--files-from`` lists: one path per line, or NUL-separated as ``find -print0`` writes them, read
as they arrive (a list of millions, or a pipe whose writer is still at work, never waits whole).
"""

from __future__ import annotations

import codecs
import itertools
import os
import re
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from ..errors import UsageError


def listed_paths(files_from: str | Path, stdin: TextIO | None) -> Iterator[str]:
    """The paths of the list ``files_from`` (``-``: ``stdin``, by default ``sys.stdin``)."""
    if str(files_from) == "-":
        yield from _list_entries(stdin if stdin is not None else sys.stdin, "the list on stdin")
        return
    try:
        handle = open(files_from, "rb")
    except OSError as error:
        raise UsageError(f"cannot read --files-from list {files_from}: {error.strerror}") from error
    with handle:
        yield from _list_entries(handle, os.fspath(files_from))


def is_stream(files_from: str | Path) -> bool:
    """Whether a list is read as it comes, once: stdin (``-``), or a pipe (``--files-from <(find ...)``)."""
    if str(files_from) == "-":
        return True
    try:
        mode = os.stat(files_from).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def check_list(files_from: str | Path) -> None:
    """Refuse now, before any work, a list file that is no list of paths (``_separated_by_nul``)."""
    try:
        with open(files_from, "rb") as handle:
            head = handle.read(_NUL_WITHIN)
    except OSError as error:
        raise UsageError(f"cannot read --files-from list {files_from}: {error.strerror}") from error
    _separated_by_nul(head.decode("utf-8", "surrogateescape"), os.fspath(files_from))


# A list is NUL-separated (``find -print0``) when a NUL comes this early: no path is longer.
_NUL_WITHIN = 64 * 1024
_PIECE = 16 * 1024  # read at most this much at a time, so a list of millions streams
# Lines end with \n (a \r before it is stripped with the other whitespace); a \r alone ends lines
# only in a list that has no \n at all (classic Mac OS, some spreadsheet exports): elsewhere it is
# part of a name, and splitting there would turn `photos/\r x.jpg` into the folder `photos/`.
_LINE_END = re.compile(r"\n")
_CR = re.compile(r"\r")
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f]")  # in few file names, in most binary files
_UTF16_OR_32_BOM = ("\udcff\udcfe", "\udcfe\udcff", "\x00\x00\udcfe\udcff")  # as read here, bytes kept


def _list_entries(stream: TextIO | BinaryIO, source: str) -> Iterator[str]:
    """The paths of a list: NUL-separated names as they are (the only way to list a name with a
    newline in it), else non-blank, non-comment lines with surrounding whitespace removed (unless
    the name with it is a file's).

    A file is looked at for a NUL up to ``_NUL_WITHIN``; a pipe or a terminal, whose writer may
    still be at work, only as far as what has arrived with its first line end."""
    pieces = _pieces(stream)
    waits = not _can_read_ahead(stream)
    head: list[str] = []
    size = 0
    for piece in pieces:
        head.append(piece)
        size += len(piece)
        if "\0" in piece or size >= _NUL_WITHIN or (waits and _LINE_END.search(piece)):
            break
    if head:
        head[0] = head[0].removeprefix("\ufeff")  # the byte-order mark Windows tools put before UTF-8
    text = itertools.chain(head, pieces)
    if _separated_by_nul("".join(head), source):
        yield from (name for name in _records(text, "\0", lambda chunk: chunk.split("\0")) if name)
        return
    ends = _CR if _cr_only("".join(head)) else _LINE_END
    for raw in _records(text, ends, ends.split):
        line = raw.removesuffix("\r") if ends is _LINE_END else raw
        trimmed = line.strip()
        if not trimmed or trimmed.startswith("#"):
            continue
        # Spaces around a name are the list's (indentation, a space before a line end), unless a
        # file is named so (`ls` lists " lead.jpg" as it is): then they are the name's.
        yield line if line != trimmed and os.path.lexists(line) else trimmed


def _cr_only(head: str) -> bool:
    """Whether a list's lines end with \r alone: no \n at all, and a \r at its end or between two
    names (one name with a \r inside, no line end, is that name)."""
    return "\n" not in head and (head.rstrip(" \t").endswith("\r") or head.count("\r") >= 2)


def _separated_by_nul(head: str, source: str) -> bool:
    """Whether a list beginning with ``head`` is NUL-separated. UTF-16 text (PowerShell's ``>``) and
    binary files have NULs too: their NULs come with empty names or control characters, or are
    a third of the text or more (every other character), and they are refused rather than read as
    names such as ``/`` or ``.``, which would walk whole folders."""
    if head.startswith(_UTF16_OR_32_BOM) or head.count("\0") * 3 >= max(len(head), 1) > 1:
        raise UsageError(f"--files-from {source}: this looks like UTF-16 text or a binary file, not a list of "
                         "paths; save it as UTF-8 (one path per line, or NUL-separated)")
    if "\0" not in head:
        return False
    names = head.split("\0")[:-1]  # the last may be cut short
    # A binary file's NULs come in runs (empty names), or among control characters in most of its
    # "names"; a real list may have names with one (an escape sequence in a downloaded name).
    if any(not name for name in names) or 2 * sum(1 for name in names if _CONTROL.search(name)) > len(names) >= 3:
        raise UsageError(f"--files-from {source}: NUL bytes among empty names or control characters: a binary "
                         "file, not a list of paths (one per line, or NUL-separated as find -print0 writes)")
    return True


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
    """Whether reading on costs no wait: a regular file (or text in memory), not a pipe or a
    terminal (which on Linux say they are seekable)."""
    try:
        return stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # io.StringIO and the like: no descriptor
        try:
            return stream.seekable()
        except (OSError, ValueError):
            return False


def _records(pieces: Iterable[str], separator: str | re.Pattern[str], split: Callable[[str], list[str]]) -> Iterator[str]:
    """The records of text read in pieces, each whole although a piece may end inside one. Pieces
    without a separator (a string, or a pattern: the line end) are gathered and joined once one
    comes, so a long record costs its length, not its length squared."""
    rest: list[str] = []
    for piece in pieces:
        if (separator not in piece) if isinstance(separator, str) else not separator.search(piece):
            rest.append(piece)
            continue
        *done, last = split("".join(rest) + piece)
        yield from done
        rest = [last]
    tail = "".join(rest)
    if tail:
        yield tail
