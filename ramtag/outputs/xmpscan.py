"""Whether a photo holds ramtag's XMP record, found without ExifTool (``ramtag xmp clean`` where
it is not installed): by reading only where each format keeps its metadata, never a photo's
image data, since a library may hold terabytes of it.

JPEG keeps XMP in APP segments before the image data, PNG in chunks beside ``IDAT``, WebP in RIFF
chunks beside the bitstream. TIFF, DNG, HEIC and AVIF may keep it anywhere their offsets point:
ExifTool writes it near the start (measured for each), other software near the end, so the first
and last 4 MiB are read. XMP is plain text in all of them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

EDGE = 4 << 20  # bytes read at each end of a format whose metadata has no fixed place
LARGEST = 16 << 20  # a metadata chunk larger than this is not XMP ramtag wrote (or a bad length): skipped
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IMAGE = {b"IDAT", b"fdAT"}  # image data, and an animated PNG's frames: skipped
_WEBP_IMAGE = {b"VP8 ", b"VP8L", b"ALPH", b"ANMF"}  # the bitstream chunks: skipped


def holds_record(path: Path, needle: bytes) -> bool:
    """Whether ``needle`` (ramtag's XMP namespace) is in the metadata of the photo at ``path``."""
    try:
        with open(path, "rb") as handle:
            return any(needle in block for block in regions(handle, path.suffix.lower()))
    except OSError:
        return False


def regions(handle: BinaryIO, suffix: str) -> Iterator[bytes]:
    """The parts of a photo that may hold XMP, read from ``handle``; a file that does not parse as
    its extension says is read at both ends instead."""
    parse = {".jpg": _jpeg, ".jpeg": _jpeg, ".jpe": _jpeg, ".png": _png, ".webp": _webp}.get(suffix)
    if parse is not None:
        try:
            yield from parse(handle)
            return
        except (ValueError, struct.error):
            handle.seek(0)
    yield from _edges(handle)


def _edges(handle: BinaryIO) -> Iterator[bytes]:
    size = os.fstat(handle.fileno()).st_size
    if size <= 2 * EDGE:
        yield handle.read()
        return
    yield handle.read(EDGE)
    handle.seek(size - EDGE)
    yield handle.read(EDGE)


def _jpeg(handle: BinaryIO) -> Iterator[bytes]:
    if handle.read(2) != b"\xff\xd8":
        raise ValueError("not a JPEG")
    while True:
        byte = handle.read(1)
        if byte != b"\xff":
            raise ValueError("no marker where one belongs")
        marker = handle.read(1)
        while marker == b"\xff":  # fill bytes
            marker = handle.read(1)
        if not marker or marker in (b"\xd9", b"\xda"):  # the end, or the image data: no XMP after
            return
        if 0xD0 <= marker[0] <= 0xD7 or marker == b"\x01":  # markers without a length
            continue
        (length,) = struct.unpack(">H", handle.read(2))
        if 0xE0 <= marker[0] <= 0xEF:  # APPn: where XMP (APP1) lives
            yield handle.read(length - 2)
        else:
            handle.seek(length - 2, os.SEEK_CUR)


def _png(handle: BinaryIO) -> Iterator[bytes]:
    if handle.read(8) != _PNG_SIGNATURE:
        raise ValueError("not a PNG")
    while header := handle.read(8):
        length, kind = struct.unpack(">I4s", header)
        if kind in _PNG_IMAGE or length > LARGEST:
            handle.seek(length + 4, os.SEEK_CUR)
            continue
        yield handle.read(length)
        handle.seek(4, os.SEEK_CUR)  # the CRC
        if kind == b"IEND":
            return


def _webp(handle: BinaryIO) -> Iterator[bytes]:
    riff = handle.read(12)
    if riff[:4] != b"RIFF" or riff[8:] != b"WEBP":
        raise ValueError("not a WebP")
    while header := handle.read(8):
        kind, length = struct.unpack("<4sI", header)
        padded = length + (length & 1)
        if kind in _WEBP_IMAGE or padded > LARGEST:
            handle.seek(padded, os.SEEK_CUR)
        else:
            yield handle.read(padded)
