"""Find the images to tag, and decode one image into pixels or a failure a user can read.

Discovery streams: a folder walk holds one directory listing (plus the names of folders still to
visit), so a million files cost no more memory than a thousand. Tar shards (``shards``) and URLs
(``sources``) are found here too, their modules imported only when an input needs them. Decoding
turns every way a file can be bad into an ``ImageDecodeError`` whose message says what is wrong
without naming the file: the caller knows the path and prefixes it, and a bad file becomes a row
with an error, not a crash.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
import re
import stat
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Protocol, TextIO, Union

from PIL import Image, ImageOps, UnidentifiedImageError, features

from .errors import RamtagError, UsageError

if TYPE_CHECKING:
    from .shards import TarShard

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".dib",
        ".tif", ".tiff", ".heic", ".heif", ".avif",
    }
)

MAX_PIXELS: int = 178_956_970
"""Largest image decoded by default: Pillow's own hard limit (2 x ``Image.MAX_IMAGE_PIXELS``).

About 179 megapixels (13,377 x 13,377), above any camera sensor in common use; decoded as RGB it
takes ~540 MB. A tiny file that claims more is almost certainly a decompression bomb.
"""

ErrorCallback = Callable[[Path, str], None]
"""Told about what a walk had to skip (an unreadable folder, a broken link) and why."""

_HEIF_EXTENSIONS = frozenset({".heic", ".heif"})
_PILLOW_COUNT = re.compile(r"\((\d+) pixels\)")
# Exceptions Pillow's plugins raise on malformed data besides OSError (each seen in the wild).
_MALFORMED = (ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, struct.error)
_pillow_limit_lock = threading.Lock()


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
    then only says where they came from (the shard, the URL's path).
    """

    path: Path
    key: str
    source: ImageSource | None = field(default=None, repr=False)


class ImageDecodeError(RamtagError):
    """A file that could not be turned into pixels; ``kind`` names the failure for statistics."""

    def __init__(self, message: str, kind: str = "unreadable") -> None:
        super().__init__(message)
        self.kind = kind

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Decoding may run in DataLoader worker processes: the error must survive pickling.
        return (type(self), (str(self), self.kind))


# --------------------------------------------------------------------------------------------
# Discovery


def is_image_name(name: str) -> bool:
    """True when a file name has one of the image extensions, in any case (``.JPG``)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


Item = Union[ImageRef, "TarShard"]
"""What discovery finds: an image, or a tar shard whose image members are read later."""


def discover(
    inputs: Sequence[str | Path],
    *,
    files_from: str | Path | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hidden: bool = False,
    stdin: TextIO | None = None,
    on_error: ErrorCallback | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> Iterator[ImageRef]:
    """Every image under ``inputs`` (folders, files, tar shards, URLs, in the order given), then
    those listed.

    Inputs are checked now, so a typo fails before any work starts; the files themselves are found
    lazily. ``files_from`` names a text file with one path per line (``-``: ``stdin``, by default
    ``sys.stdin``); a listed folder is walked like an input, a listed file is yielded even if it
    is missing or not an image, so it fails at decode as a row rather than stopping the run.
    ``include``/``exclude`` are globs (case-sensitive, ``*`` crosses ``/``) on the key; a pattern
    without ``/`` also matches the file name alone. Tar shards are read here, one member at a time
    (``max_pixels`` bounds the size of a member read).
    """
    items = discover_items(inputs, files_from=files_from, hidden=hidden, stdin=stdin, on_error=on_error)
    return select(image_refs(items, hidden=hidden, max_pixels=max_pixels), include, exclude)


def discover_items(
    inputs: Sequence[str | Path],
    *,
    files_from: str | Path | None = None,
    hidden: bool = False,
    stdin: TextIO | None = None,
    on_error: ErrorCallback | None = None,
) -> Iterator[Item]:
    """Like ``discover``, but tar shards come as ``TarShard`` items, unopened: what an engine
    that hands out whole shards needs. Nothing is filtered."""
    given = [(os.fspath(item), _resolved(item)) for item in inputs]
    if files_from is not None and str(files_from) != "-" and not os.path.isfile(files_from):
        raise UsageError(f"--files-from list not found (or not a file): {files_from}")
    # A brace pattern stands for several paths; a folder URL for one folder, however many files.
    places = sum(len(found) if all(isinstance(f, (str, Path)) for f in found) else 1 for _, found in given)
    several = places > 1 or files_from is not None
    roots = [root for written, found in given for root in (_under(written, found) if several else found)]
    return _all_items(roots, files_from, stdin, hidden, on_error, several)


def _under(written: str, found: list[str | Path | Item]) -> list[str | Path | Item]:
    """A folder URL's images keyed under the URL as written (a single URL is keyed by itself)."""
    base = written.rstrip("/")
    return [
        replace(item, key=f"{base}/{item.key}")
        if isinstance(item, ImageRef) and item.source is not None and item.key != written
        else item
        for item in found
    ]


def image_refs(items: Iterable[Item], *, hidden: bool = False, max_pixels: int | None = MAX_PIXELS) -> Iterator[ImageRef]:
    """``items`` with each tar shard replaced by its image members, read in order."""
    for item in items:
        if isinstance(item, ImageRef):
            yield item
        else:
            from .shards import members_or_error

            yield from members_or_error(item, hidden=hidden, max_pixels=max_pixels)


def select(refs: Iterable[ImageRef], include: Sequence[str], exclude: Sequence[str]) -> Iterator[ImageRef]:
    """The refs whose key passes ``--include``/``--exclude``."""
    if not include and not exclude:
        return iter(refs)
    return (ref for ref in refs if _selected(ref.key, include, exclude))


def _resolved(item: str | Path) -> list[str | Path | Item]:
    """An input as given on the command line, checked: a URL or brace pattern may stand for many."""
    if os.path.exists(item):
        return [item]
    from .sources import resolve_input

    return resolve_input(os.fspath(item))


def _all_items(
    roots: Sequence[str | Path | Item],
    files_from: str | Path | None,
    stdin: TextIO | None,
    hidden: bool,
    on_error: ErrorCallback | None,
    several: bool,
) -> Iterator[Item]:
    found = (item for root in roots for item in _expand(root, hidden, on_error, several))
    if files_from is not None:
        listed = (item for line in _listed_paths(files_from, stdin) for item in _expand(line, hidden, on_error, True))
        found = itertools.chain(found, listed)
    yield from _once(found, on_error) if several else found


def _once(items: Iterable[Item], on_error: ErrorCallback | None) -> Iterator[Item]:
    """Each key once: an image given twice (``photos`` and ``photos/a.jpg``, a list naming a file
    twice) is tagged once; two tar shards of one name, whose keys would collide, are refused."""
    from .shards import TarShard, name_clash

    keys: set[str] = set()
    shards: dict[str, str] = {}
    for item in items:
        if isinstance(item, TarShard):
            if item.name in shards and shards[item.name] != item.location:
                raise name_clash(shards[item.name], item)
            if item.name in shards:
                if on_error is not None:
                    on_error(Path(item.location), "given twice among the inputs: tagged once")
                continue
            shards[item.name] = item.location
        elif item.key in keys:
            if on_error is not None:
                on_error(item.path, "given twice among the inputs: tagged once")
            continue
        else:
            keys.add(item.key)
        yield item


def _expand(
    item: str | Path | Item, hidden: bool, on_error: ErrorCallback | None, several: bool
) -> Iterator[Item]:
    """A folder walked (or its tar shards), anything else yielded as the user wrote it; with
    ``several`` inputs, a folder's keys start with the folder as written."""
    if not isinstance(item, (str, Path)):
        yield item  # already resolved: a shard or a remote image
        return
    from .shards import TarShard, is_shard_name, shard_folder
    from .sources import is_url, remote_item

    if isinstance(item, str) and is_url(item):  # a URL in a list: no lookup, it fails as a row
        yield remote_item(item, item)
    elif os.path.isdir(item):
        shards = shard_folder(Path(item), hidden=hidden)
        if shards is not None:
            yield from shards
        else:
            prefix = _folder_prefix(os.fspath(item)) if several else ""
            yield from walk_folder(Path(item), hidden=hidden, on_error=on_error, key_prefix=prefix)
    elif is_shard_name(os.fspath(item)):
        yield TarShard(os.fspath(item), os.path.basename(item))
    else:
        yield ImageRef(Path(item), str(item))


def _listed_paths(files_from: str | Path, stdin: TextIO | None) -> Iterator[str]:
    if str(files_from) == "-":
        yield from _list_lines(stdin if stdin is not None else sys.stdin)
        return
    try:
        # surrogateescape: names that are not valid UTF-8 still round-trip on POSIX.
        handle = open(files_from, encoding="utf-8", errors="surrogateescape")
    except OSError as error:
        raise UsageError(f"cannot read --files-from list {files_from}: {error.strerror}") from error
    with handle:
        yield from _list_lines(handle)


def _list_lines(stream: TextIO) -> Iterator[str]:
    """Non-blank, non-comment lines with surrounding whitespace (and CRLF endings) removed."""
    for raw in stream:
        line = raw.strip()
        if line and not line.startswith("#"):
            yield line


def _folder_prefix(written: str) -> str:
    """``photos/2024/`` for a folder written ``photos/2024`` or ``./photos/2024/``; "" for ``.``."""
    path = Path(written).as_posix()
    if path == ".":
        return ""
    return path if path.endswith("/") else path + "/"  # the root folder is "/" already


def walk_folder(
    root: Path, *, hidden: bool = False, on_error: ErrorCallback | None = None, key_prefix: str = ""
) -> Iterator[ImageRef]:
    """Images under ``root``, following symlinks, each real folder visited once (no loops).

    Keys are relative to ``root``, after ``key_prefix``. Each folder's files come first, sorted by
    name (code points, so every machine agrees), then its subfolders in the same order. Only a
    folder's sorted listing and the names of the folders still to visit are held in memory.
    """
    visited: set[tuple[int, int] | str] = set()
    pending: list[tuple[str, str]] = [(os.fspath(root), key_prefix)]  # (folder path, key prefix), a stack
    while pending:
        folder, prefix = pending.pop()
        identity = _folder_identity(folder, on_error)
        if identity is None or identity in visited:
            continue  # unreadable (reported), or a link back to a folder already walked
        visited.add(identity)
        entries = _sorted_listing(folder, on_error)
        subfolders: list[str] = []
        for entry in entries:
            if not hidden and entry.name.startswith("."):
                continue
            if _is_dir(entry):
                subfolders.append(entry.name)
            elif is_image_name(entry.name):
                if _is_file(entry):
                    yield ImageRef(Path(entry.path), prefix + entry.name)
                elif entry.is_symlink() and on_error is not None:
                    on_error(Path(entry.path), "broken symbolic link skipped")
        del entries
        for name in reversed(subfolders):
            pending.append((os.path.join(folder, name), f"{prefix}{name}/"))


def _folder_identity(folder: str, on_error: ErrorCallback | None) -> tuple[int, int] | str | None:
    try:
        info = os.stat(folder)
    except OSError as error:
        _report(on_error, folder, error)
        return None
    if info.st_ino == 0:  # some network and FUSE file systems have no inode numbers
        return os.path.realpath(folder)
    return (info.st_dev, info.st_ino)


def _sorted_listing(folder: str, on_error: ErrorCallback | None) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        _report(on_error, folder, error)
        return []


def _report(on_error: ErrorCallback | None, folder: str, error: OSError) -> None:
    if on_error is None:
        return
    if isinstance(error, PermissionError):
        on_error(Path(folder), "permission denied: folder skipped")
    else:
        on_error(Path(folder), f"cannot list folder ({error.strerror or error}): folder skipped")


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _selected(key: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if include and not _matches(key, include):
        return False
    return not _matches(key, exclude)


def _matches(key: str, patterns: Sequence[str]) -> bool:
    name = os.path.basename(key)
    return any(
        fnmatchcase(key, pattern) or ("/" not in pattern and fnmatchcase(name, pattern))
        for pattern in patterns
    )


# --------------------------------------------------------------------------------------------
# Decoding


def decode_image(
    path: Path, *, max_pixels: int | None = MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """The first frame of ``path``, upright (EXIF orientation applied), pixels loaded.

    The mode is whatever the file holds (``RGB``, ``L``, ``CMYK``, ``I;16``...): converting is the
    caller's job. The size limit is checked on the header, before any pixel is decoded; ``None``
    means no limit. Every failure is an ``ImageDecodeError`` whose message omits the path.

    With ``draft_size``, a JPEG is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling) as
    long as both sides stay at least ``draft_size``: several times faster for photos much larger
    than the model's input, at the price of slightly different pixels. ``original_size`` still
    gives the file's own size.
    """
    _prepare_pillow(max_pixels)
    _check_file(path)
    return _decode(path, path, max_pixels, draft_size)


def decode_bytes(
    data: bytes, *, name: str, max_pixels: int | None = MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """``decode_image`` for a file already in memory; ``name`` (its file name) words the errors."""
    _prepare_pillow(max_pixels)
    if not data:
        raise ImageDecodeError("empty file (0 bytes): an interrupted copy or download?", "empty")
    return _decode(io.BytesIO(data), PurePosixPath(name), max_pixels, draft_size)


def decode_ref(
    ref: ImageRef, *, max_pixels: int | None = MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """The image ``ref`` stands for: a local file, or the bytes its ``source`` reads."""
    if ref.source is None:
        return decode_image(ref.path, max_pixels=max_pixels, draft_size=draft_size)
    data = ref.source.read(max_file_bytes(max_pixels))
    return decode_bytes(data, name=ref.source.name, max_pixels=max_pixels, draft_size=draft_size)


def original_size(image: Image.Image) -> tuple[int, int]:
    """The upright size of the file an image came from, also when it was decoded in draft mode."""
    return image.info.get(_ORIGINAL_SIZE, image.size)


_ORIGINAL_SIZE = "ramtag_original_size"


def _decode(
    where: Path | io.BytesIO,
    named: Path | PurePosixPath,
    max_pixels: int | None,
    draft_size: int | None = None,
) -> Image.Image:
    try:
        with Image.open(where) as image:
            _check_pixels(image.size, max_pixels)
            width, height = image.size
            if draft_size is not None and image.format == "JPEG":
                image.draft(image.mode, (draft_size, draft_size))
            image.load()  # errors in the pixel data surface here, not in a worker later
            upright = ImageOps.exif_transpose(image)  # a copy, detached from the (closed) file
            if upright.size != image.size:  # rotated by a quarter turn
                width, height = height, width
            if (width, height) != upright.size:
                upright.info[_ORIGINAL_SIZE] = (width, height)
            return upright
    except Image.DecompressionBombError as error:
        raise _too_large_from_pillow(error, max_pixels) from error
    except Image.DecompressionBombWarning as error:  # only when warnings are turned into errors
        raise _too_large_from_pillow(error, max_pixels) from error
    except FileNotFoundError as error:
        raise _gone() from error
    except PermissionError as error:
        raise _denied() from error
    except UnidentifiedImageError as error:
        raise _unidentified(named) from error
    except MemoryError as error:
        raise ImageDecodeError(
            "not enough memory to decode this image; lower --max-pixels to skip images this large",
            "memory",
        ) from error
    except OSError as error:
        raise _damaged(error) from error
    except _MALFORMED as error:
        raise ImageDecodeError(f"corrupt image data ({_pillow_words(error)})", "corrupt") from error


def _check_file(path: Path) -> None:
    """Cheap checks Pillow would answer confusingly (or, for a pipe, by waiting forever)."""
    try:
        info = os.stat(path)
    except FileNotFoundError as error:
        raise _gone() from error
    except PermissionError as error:
        raise _denied() from error
    except OSError as error:
        reason = error.strerror or str(error)
        raise ImageDecodeError(f"cannot read the file ({reason})", "unreadable") from error
    if stat.S_ISDIR(info.st_mode):
        raise ImageDecodeError("is a folder, not an image file", "folder")
    if not stat.S_ISREG(info.st_mode):
        raise ImageDecodeError("not a regular file (a device, pipe or socket)", "not_image")
    if info.st_size == 0:
        raise ImageDecodeError("empty file (0 bytes): an interrupted copy or download?", "empty")


def _check_pixels(size: tuple[int, int], max_pixels: int | None) -> None:
    pixels = size[0] * size[1]
    if max_pixels is not None and pixels > max_pixels:
        raise _too_large(pixels, max_pixels)


def _too_large(pixels: int, max_pixels: int) -> ImageDecodeError:
    return ImageDecodeError(
        f"image too large: {pixels:,} pixels is over the limit of {max_pixels:,} "
        "(a guard against decompression bombs); raise it with --max-pixels if you trust the file",
        "too_large",
    )


def _too_large_from_pillow(error: Exception, max_pixels: int | None) -> ImageDecodeError:
    # Pillow refuses before we see the size; its message is the only place the count appears.
    found = _PILLOW_COUNT.search(str(error))
    if found and max_pixels is not None and int(found.group(1)) > max_pixels:
        return _too_large(int(found.group(1)), max_pixels)
    return ImageDecodeError(
        f"Pillow refused it as a possible decompression bomb ({error}); "
        "raise the limit with --max-pixels if you trust the file",
        "too_large",
    )


def _gone() -> ImageDecodeError:
    return ImageDecodeError("file not found: deleted or moved before it could be read", "missing")


def _denied() -> ImageDecodeError:
    return ImageDecodeError(
        "permission denied: the file is not readable by this user", "permission"
    )


def _unidentified(path: Path | PurePosixPath) -> ImageDecodeError:
    suffix = path.suffix.lower()
    if suffix in _HEIF_EXTENSIONS and not _heif_ready():
        return ImageDecodeError(
            "HEIC/HEIF images need pillow-heif: pip install pillow-heif", "unsupported"
        )
    if suffix == ".avif" and not _avif_ready():
        return ImageDecodeError(
            "AVIF images need a Pillow built with AVIF support (the official wheels since 11.3)",
            "unsupported",
        )
    return ImageDecodeError(
        "not an image Pillow can read: the content matches no supported format "
        "(mislabelled, corrupt or cut off early)",
        "not_image",
    )


def _damaged(error: OSError) -> ImageDecodeError:
    words = _pillow_words(error)
    if "truncated" in words.lower():
        return ImageDecodeError(
            f"truncated file: the image data ends early ({words}); "
            "an interrupted copy or download?",
            "truncated",
        )
    return ImageDecodeError(f"corrupt image data ({words})", "corrupt")


def _pillow_words(error: BaseException) -> str:
    """Pillow's own explanation, without a file name (the caller adds the path)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _prepare_pillow(max_pixels: int | None) -> None:
    """Register HEIF support, and make sure Pillow's own bomb guard does not refuse first.

    Pillow raises ``DecompressionBombError`` inside ``Image.open`` for anything over
    2 x ``Image.MAX_IMAGE_PIXELS``, before our check sees the size, so a ``max_pixels`` above that
    could never work. Only then is Pillow's process-wide limit raised, just enough and never
    lowered: a lowered or restored limit would race with other threads decoding. At the default
    ``MAX_PIXELS`` nothing changes.
    """
    _heif_ready()
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
def _heif_ready() -> bool:
    """Teach Pillow HEIC/HEIF once, at the first decode; False when pillow-heif is missing."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


@functools.cache
def _avif_ready() -> bool:
    return bool(features.check("avif"))
