"""What every input module shares: one image to tag (``ImageRef``), the size limits, the decode error.

The bottom layer of ``ramtag.inputs``: it imports nothing else of ramtag's but the error base class
and ``ramtag.text``, so finding files, reading tar shards and URLs, and decoding can all build on it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import RamtagError
from ..text import printable
from .identity import Stamp

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib",
        ".tif", ".tiff", ".heic", ".heif", ".avif",
    }
)

RAW_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".3fr", ".ari", ".arw", ".cr2", ".cr3", ".crw", ".dcr", ".dng", ".erf", ".fff", ".gpr",
        ".iiq", ".k25", ".kdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".pef", ".raf",
        ".raw", ".rw2", ".rwl", ".sr2", ".srf", ".srw", ".x3f",
    }
)
"""Camera raw formats LibRaw reads, by extension (any case), decoded by ``inputs.raw``. DNG is
Adobe's open raw; the rest are the cameras' own ("proprietary raws"), never written to."""

RAW_DECODES = ("auto", "demosaic")
"""How a raw is decoded (``inputs.raw``): ``auto``, the embedded preview when it is large enough,
else LibRaw's demosaic; ``demosaic``: always develop the sensor data (slower, independent of how
the camera rendered its preview)."""

MAX_PIXELS: int = 178_956_970
"""Largest image decoded by default: Pillow's own hard limit (2 x ``Image.MAX_IMAGE_PIXELS``).

About 179 megapixels (13,377 x 13,377), above any camera sensor in common use; decoded as RGB it
takes ~540 MB. A tiny file that claims more is almost certainly a decompression bomb.
"""

ErrorCallback = Callable[[Path, str], None]
"""Told about what a walk had to skip (an unreadable folder, a broken link) and why."""

def max_file_bytes(max_pixels: int | None) -> int | None:
    """Largest image file read into memory whole (a tar member, a remote file), or ``None``.

    An uncompressed 8-bit RGBA image at the pixel limit, plus 64 KiB of headers: anything larger
    cannot be an image ramtag would decode, and reading it could cost more memory than decoding.
    """
    return None if max_pixels is None else 4 * max_pixels + (1 << 16)


class ImageSource(Protocol):
    """Where the bytes of an image that is not a local file come from (picklable: it crosses to
    decoding workers). ``name`` is the file name, for messages that depend on the extension."""

    name: str

    def read(self, limit: int | None) -> bytes:
        """The whole file; an ``ImageDecodeError`` when it is over ``limit`` bytes or unreadable."""
        ...


@dataclass(frozen=True)
class ImageRef:
    """One image to tag: ``path`` to open (or ``source`` to read), ``key`` to write in the outputs.

    ``key`` is relative to the input folder it was found under, with ``/`` separators on every
    system, so outputs from different machines line up; when a run has several inputs (or a
    ``--files-from`` list), a folder's keys start with the folder as the user wrote it, so that
    ``a/x.jpg`` and ``b/x.jpg`` stay two rows. A file named directly or in a list keeps the path
    exactly as the user wrote it. Tar members and remote files have a ``source``; their ``path``
    then only says where they came from (the shard, the URL's path). ``stamp`` is what a re-run
    compares to see whether the file changed (``identity``).
    """

    path: Path
    key: str
    source: ImageSource | None = field(default=None, repr=False)
    stamp: Stamp | None = field(default=None, repr=False)  # size and time (``identity``), once known
    walked: bool = field(default=False, repr=False)  # found by walking a folder input (``roots``)

    def __post_init__(self) -> None:
        if not self.key.isascii():
            object.__setattr__(self, "key", printable(self.key))  # a name that is not UTF-8


class ImageDecodeError(RamtagError):
    """A file that could not be turned into pixels; ``kind`` names the failure for statistics."""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Decoding may run in DataLoader worker processes: the error must survive pickling.
        return (type(self), (str(self), self.kind))



def is_image_name(name: str) -> bool:
    """True when a file name has one of the image extensions, in any case (``.JPG``)."""
    suffix = os.path.splitext(name)[1].lower()
    return suffix in IMAGE_EXTENSIONS or suffix in RAW_EXTENSIONS


def is_raw_name(name: str | os.PathLike[str]) -> bool:
    """True when a file name has a camera raw extension, in any case (``IMG_1.CR2``)."""
    return os.path.splitext(os.fspath(name))[1].lower() in RAW_EXTENSIONS


def too_large(pixels: int, max_pixels: int) -> ImageDecodeError:
    return ImageDecodeError(
        f"image too large: {pixels:,} pixels is over the limit of {max_pixels:,} "
        "(a guard against decompression bombs); raise it with --max-pixels (max_pixels= in Python) if you trust the file",
        "too_large",
    )



@dataclass(frozen=True)
class Decoded:
    """An image its caller decoded already (a PIL image given to ``Tagger.tag``): used as it is."""

    name: str
    image: Any = field(repr=False)

    def read(self, limit: int | None) -> bytes:
        raise ImageDecodeError("an image already decoded has no bytes to read", "internal")
