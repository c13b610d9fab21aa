"""Decoding one image into upright pixels, or into a failure a user can read.

Every way a file can be bad becomes an ``ImageDecodeError`` whose message says what is wrong without
naming the file: the caller knows the path and prefixes it, and a bad file becomes a row with an
error, not a crash.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import struct
import threading
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps, UnidentifiedImageError, features

from ..errors import silence
from .jpeg import JPEG_MAGIC, EncodedJpeg, encoded_jpeg, end_marker_added
from .raw import ORIGINAL_SIZE, RawOptions, decode_raw
from .refs import MAX_PIXELS, Decoded, ImageDecodeError, ImageRef, is_raw_name, max_file_bytes, too_large

_HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
_PILLOW_COUNT = re.compile(r"\((\d+) pixels\)")
# Exceptions Pillow's plugins raise on malformed data besides OSError (each seen in the wild).
_MALFORMED = (ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, struct.error)
_pillow_limit_lock = threading.Lock()
_heif_known = False  # pillow-heif registered with Pillow (``_teach_heif``)
_RAW = RawOptions()


def decode_image(
    path: Path,
    *,
    max_pixels: int | None = MAX_PIXELS,
    draft_size: int | None = None,
    raw: RawOptions = _RAW,
    upright: bool = True,
) -> Image.Image:
    """The first frame of ``path``, upright (EXIF orientation applied), pixels loaded.

    The mode is whatever the file holds (``RGB``, ``L``, ``CMYK``, ``I;16``...): converting is the
    caller's job. The size limit is checked on the header, before any pixel is decoded; ``None``
    means no limit. Every failure is an ``ImageDecodeError`` whose message omits the path.

    With ``draft_size``, a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) as
    long as both sides stay at least ``draft_size``: several times faster for photos much larger
    than the model's input, at the price of slightly different pixels. ``original_size`` still
    gives the file's own size.

    A camera raw (``.CR2``, ``.NEF``, ``.dng``...) is decoded by LibRaw as ``raw`` says
    (``inputs.raw``): its embedded preview or its developed sensor data, always upright.

    ``upright`` False leaves the pixels as stored, EXIF orientation ignored, as the official code
    reads images (``--ignore-orientation``).
    """
    _prepare_pillow(max_pixels)
    _check_file(path)
    if is_raw_name(path.name):
        return decode_raw(path, path, max_pixels=max_pixels, options=raw)
    return _decode(path, path, max_pixels, draft_size, upright)


def decode_bytes(
    data: bytes,
    *,
    name: str,
    max_pixels: int | None = MAX_PIXELS,
    draft_size: int | None = None,
    raw: RawOptions = _RAW,
    upright: bool = True,
) -> Image.Image:
    """``decode_image`` for a file already in memory; ``name`` (its file name) words the errors
    and says whether it is a camera raw."""
    _prepare_pillow(max_pixels)
    if not data:
        raise _empty()
    if is_raw_name(name):
        return decode_raw(data, PurePosixPath(name), max_pixels=max_pixels, options=raw)
    return _decode(io.BytesIO(data), PurePosixPath(name), max_pixels, draft_size, upright)


def decode_ref(
    ref: ImageRef,
    *,
    max_pixels: int | None = MAX_PIXELS,
    draft_size: int | None = None,
    raw: RawOptions = _RAW,
    upright: bool = True,
) -> Image.Image:
    """The image ``ref`` stands for: a local file, the bytes its ``source`` reads, or an image
    decoded already (``Decoded``)."""
    if isinstance(ref.source, Decoded):
        return _given(ref.source.image, upright)
    if ref.source is None:
        return decode_image(ref.path, max_pixels=max_pixels, draft_size=draft_size, raw=raw, upright=upright)
    data = ref.source.read(max_file_bytes(max_pixels))
    return decode_bytes(data, name=ref.source.name, max_pixels=max_pixels, draft_size=draft_size, raw=raw,
                        upright=upright)


def decode_or_encoded(
    ref: ImageRef,
    *,
    max_pixels: int | None = MAX_PIXELS,
    draft_size: int | None = None,
    raw: RawOptions = _RAW,
    upright: bool = True,
) -> Image.Image | EncodedJpeg:
    """``decode_ref``, except that a plain JPEG comes back still encoded, with what its decoding
    on the GPU needs (``inputs.jpeg``); its file is read once either way."""
    if isinstance(ref.source, Decoded):
        return _given(ref.source.image, upright)
    name = ref.path.name if ref.source is None else ref.source.name
    if is_raw_name(name):
        return decode_ref(ref, max_pixels=max_pixels, draft_size=draft_size, raw=raw, upright=upright)
    _prepare_pillow(max_pixels)  # or Pillow's own guard refuses large headers first
    limit = max_file_bytes(max_pixels)
    if ref.source is not None:
        data = ref.source.read(limit)
    else:
        _check_file(ref.path)
        data = _read_jpeg(ref.path, limit)
        if data is None:  # not a JPEG, or larger than any image within the limit: from its path
            return _decode(ref.path, ref.path, max_pixels, draft_size, upright)  # checked and prepared above
    jpeg = encoded_jpeg(data, name, max_pixels=max_pixels, upright=upright)
    if jpeg is not None:
        return jpeg
    return decode_bytes(data, name=name, max_pixels=max_pixels, draft_size=draft_size, raw=raw, upright=upright)


def original_size(image: Image.Image) -> tuple[int, int]:
    """The upright size of the file an image came from, also when it was decoded in draft mode."""
    return image.info.get(_ORIGINAL_SIZE, image.size)


_ORIGINAL_SIZE = ORIGINAL_SIZE


def _given(image: Image.Image, upright: bool = True) -> Image.Image:
    """A PIL image a caller decoded, turned upright as a file would be (the same photo gives the same
    tags either way; an image turned already has no orientation left to apply); an empty one refused."""
    if image.width == 0 or image.height == 0:
        raise ImageDecodeError(f"an empty image ({image.width}x{image.height} pixels)", "empty")
    if not upright or image.getexif().get(_ORIENTATION, 1) in (1, None):
        return image
    return ImageOps.exif_transpose(image)


_ORIENTATION = 0x0112


def _decode(
    where: Path | io.BytesIO,
    named: Path | PurePosixPath,
    max_pixels: int | None,
    draft_size: int | None = None,
    upright: bool = True,
) -> Image.Image:
    heif_known = _heif_known  # before Pillow tries: another thread may teach it HEIF meanwhile
    try:
        with Image.open(where) as image:
            _check_pixels(image.size, max_pixels)
            width, height = image.size
            if draft_size is not None and image.format == "JPEG":
                image.draft(image.mode, (draft_size, draft_size))
            image.load()  # errors in the pixel data surface here, not in a worker later
            loaded = image.size  # after any draft scaling
            if not upright:  # as stored, EXIF orientation ignored (a copy, detached from the file)
                turned = image if image.format == "JPEG" else image.copy()
            elif image.format == "JPEG":
                # One frame, turned upright in place: a loaded JPEG outlives its file, and an
                # upright one (most photos) is not copied, which saves ~50 ms on 12 megapixels.
                ImageOps.exif_transpose(image, in_place=True)
                turned = image
            else:  # a copy, detached from the file: frame counts and the like need none
                turned = ImageOps.exif_transpose(image)
            if turned.size != loaded:  # rotated by a quarter turn
                width, height = height, width
            if (width, height) != turned.size:  # decoded at reduced scale: the file's size recorded
                turned.info[_ORIGINAL_SIZE] = (width, height)
            return turned
    except Image.DecompressionBombError as error:
        raise _too_large_from_pillow(error, max_pixels) from error
    except Image.DecompressionBombWarning as error:  # only when warnings are turned into errors
        raise _too_large_from_pillow(error, max_pixels) from error
    except FileNotFoundError as error:
        raise _gone() from error
    except PermissionError as error:
        raise _denied() from error
    except UnidentifiedImageError as error:
        if not heif_known and _teach_heif():  # perhaps a HEIC: Pillow knows it now
            if isinstance(where, io.BytesIO):
                where.seek(0)
            return _decode(where, named, max_pixels, draft_size, upright)
        raise _unidentified(named) from error
    except MemoryError as error:
        raise ImageDecodeError(
            "not enough memory to decode this image; lower --max-pixels to skip images this large",
            "memory",
        ) from error
    except OSError as error:
        whole = end_marker_added(where) if "truncated" in _pillow_words(error).lower() else None
        if whole is not None:  # an old camera's or scanner's JPEG without its last two bytes
            return _decode(io.BytesIO(whole), named, max_pixels, draft_size, upright)
        raise _damaged(error) from error
    except _MALFORMED as error:
        raise _damaged(error) from error


def _check_file(path: Path) -> None:
    """Cheap checks Pillow would answer confusingly (or, for a pipe, by waiting forever)."""
    try:
        info = os.stat(path)
    except OSError as error:
        raise _unreadable(error) from error
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError("is a folder, not an image file", "folder")
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError("not a regular file (a device, pipe or socket)", "not_image")
    if info.st_size == 0:
        raise _empty()


def _read_jpeg(path: Path, limit: int | None) -> bytes | None:
    """The whole file if it starts as a JPEG does; ``None`` when it does not or holds more than
    ``limit`` bytes (Pillow then reads only what it needs)."""
    try:
        with open(path, "rb") as file:
            if file.read(len(JPEG_MAGIC)) != JPEG_MAGIC:
                return None
            file.seek(0)
            data = file.read() if limit is None else file.read(limit + 1)
    except OSError as error:
        raise _unreadable(error) from error
    if not data:
        raise _empty()
    return None if limit is not None and len(data) > limit else data


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    pixels = size[0] * size[1]
    if max_pixels is not None and pixels > max_pixels:
        raise too_large(pixels, max_pixels)


def _too_large_from_pillow(error: Exception, max_pixels: int | None) -> ImageDecodeError:
    # Pillow refuses before we see the size; its message is the only place the count appears.
    found = _PILLOW_COUNT.search(str(error))
    if found and max_pixels is not None and int(found.group(1)) > max_pixels:
        return too_large(int(found.group(1)), max_pixels)
    return ImageDecodeError(
        f"Pillow refused it as a possible decompression bomb ({error}); "
        "raise the limit with --max-pixels if you trust the file",
        "too_large",
    )


def _unreadable(error: OSError) -> ImageDecodeError:
    if isinstance(error, FileNotFoundError):
        return _gone()
    if isinstance(error, PermissionError):
        return _denied()
    return ImageDecodeError(f"cannot read the file ({error.strerror or error})", "unreadable")


def _empty() -> ImageDecodeError:
    return ImageDecodeError("empty file (0 bytes): an interrupted copy or download?", "empty")


def _gone() -> ImageDecodeError:
    return ImageDecodeError("file not found (no such file, or deleted or moved since it was found)", "missing")


def _denied() -> ImageDecodeError:
    return ImageDecodeError(
        "permission denied: the file is not readable by this user", "permission"
    )


def _unidentified(path: Path | PurePosixPath) -> ImageDecodeError:
    suffix = path.suffix.lower()
    if suffix in _HEIF_EXTENSIONS and not heif_ready():
        return ImageDecodeError(
            "HEIC/HEIF images need pillow-heif: pip install pillow-heif", "unsupported"
        )
    if suffix == ".avif" and not _avif_ready():
        return ImageDecodeError(
            "AVIF images need a Pillow built with AVIF support (the official wheels since 11.3)",
            "unsupported",
        )
    if path.name.startswith("._"):
        return ImageDecodeError(
            f"not an image: a macOS AppleDouble file, the Finder's metadata for {path.name[2:]} on a disk "
            "that is not a Mac's; leave out names starting with ._ (find ... ! -name '._*')",
            "not_image",
        )
    return ImageDecodeError(
        "not an image Pillow can read: the content matches no supported format "
        "(mislabelled, corrupt or cut off early)",
        "not_image",
    )


def _damaged(error: BaseException) -> ImageDecodeError:
    words = _pillow_words(error)
    if "truncated" in words.lower() or "end of file" in words.lower():  # libheif's: "Unexpected end of file"
        return ImageDecodeError(
            f"truncated file: the image data ends early ({words}); "
            "an interrupted copy or download?",
            "truncated",
        )
    return ImageDecodeError(f"corrupt image data ({words})", "corrupt")


def _pillow_words(error: BaseException) -> str:
    """Pillow's own explanation, without a file name (the caller adds the path)."""
    if isinstance(error, OSError) and error.strerror:
        return " ".join(error.strerror.split())
    return " ".join(str(error).split()) or type(error).__name__  # one line (libheif's end with a newline)


def _prepare_pillow(max_pixels: int | None) -> None:
    """Make sure Pillow's own bomb guard does not refuse first.

    Pillow raises ``DecompressionBombError`` inside ``Image.open`` for anything over
    2 x ``Image.MAX_IMAGE_PIXELS``, before our check sees the size, so a ``max_pixels`` above that
    could never work. Only then is Pillow's process-wide limit raised, just enough and never
    lowered: a lowered or restored limit would race with other threads decoding. At the default
    ``MAX_PIXELS`` nothing changes.

    Pillow also warns of any image over half its limit (a "could be decompression bomb DOS attack"
    line on stderr, for a photo ramtag then tags): ramtag's own limit says what it refuses, so that
    warning is silenced (again at each call: a caller's ``catch_warnings`` may have restored it).
    """
    silence(Image.DecompressionBombWarning)
    current = Image.MAX_IMAGE_PIXELS
    if current is None or (max_pixels is not None and 2 * current >= max_pixels):
        return
    with _pillow_limit_lock:
        current = Image.MAX_IMAGE_PIXELS
        if max_pixels is None:
            Image.MAX_IMAGE_PIXELS = None
        elif current is not None and 2 * current < max_pixels:
            Image.MAX_IMAGE_PIXELS = (max_pixels + 1) // 2


@functools.cache
def heif_ready() -> bool:
    """Teach Pillow HEIC/HEIF once; False when pillow-heif is missing."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _teach_heif() -> bool:
    """Whether Pillow knows HEIF now. Done at the first file Pillow cannot identify, not at
    start-up: importing pillow-heif takes 0.2 s, and most collections hold no HEIC."""
    global _heif_known
    if heif_ready():
        _heif_known = True
    return _heif_known


@functools.cache
def _avif_ready() -> bool:
    return bool(features.check("avif"))

