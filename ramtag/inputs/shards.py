"""Tar shards (webdataset / img2dataset): image members read in order, in memory, one at a time.

Nothing is extracted to disk: each image member is read into memory when its turn comes (one may
wait there for the next members of its sample, ``_Sample``), so a
shard streams from a local disk or object storage in one sequential pass, and names inside the
archive (absolute, ``..``) can never write anywhere. Only regular members count; directories,
links and devices are skipped, and so are members that are not images (``.json``, ``.txt``).

Keys follow the webdataset convention: a member's key is its path inside the archive up to the
first dot of its file name (``00000/000000123.jpg`` → ``00000/000000123``), and the row key is
``<shard file name>/<member key>`` (``00012.tar/000120034``), unique across the shards of a run
and the same whether the shard is read from a folder, a URL or a pattern. A sample with several
images (``x.depth.png``, ``x.jpg``, in either order) gives the key ``x`` to the one with a plain
extension (``x.jpg``) and the others their full member name (``x.depth.png``).

A member too large to be an image ramtag would decode, or cut off, becomes an error row keyed like
any other. A damaged archive gives a row keyed by the shard name that says where reading stopped.
A shard that cannot be read at all (I/O, network) raises ``ShardReadError``: worth retrying.
"""

from __future__ import annotations

import gzip
import lzma
import os
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from typing import Union

from ..errors import RamtagError, UsageError
from ..text import printable
from .fs import failure, open_url
from .identity import Stamp
from .refs import MAX_PIXELS, ImageDecodeError, ImageRef, is_image_name, max_file_bytes

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# What a damaged or mislabelled archive raises, as opposed to a failure to read its bytes.
_FORMAT_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class ShardReadError(RamtagError):
    """A shard whose bytes could not be read (missing, permission, network): retry it later."""


@dataclass(frozen=True)
class TarShard:
    """A tar file of images: ``location`` is a local path or a URL, ``name`` its file name (the
    prefix of its keys and, for the Ray engine, the name it is committed under)."""

    location: str
    name: str
    remote: bool = False

    def open(self) -> BinaryIO:
        if not self.remote:
            return open(self.location, "rb")
        return open_url(self.location)


Item = Union[ImageRef, TarShard]
"""What discovery finds: an image, or a tar shard whose image members are read later."""


@dataclass(frozen=True)
class InMemory:
    """An image already read (a tar member read in order with its shard)."""

    name: str
    data: bytes = field(repr=False)

    def read(self, limit: int | None) -> bytes:
        return self.data  # its size was checked before it was read


@dataclass(frozen=True)
class Unusable:
    """An image known to be bad before decoding (a tar member too large or cut off): the error is
    raised at decode time, so it becomes a row like any other bad image."""

    name: str
    message: str
    kind: str

    def read(self, limit: int | None) -> bytes:
        raise ImageDecodeError(self.message, self.kind)


@dataclass(frozen=True)
class Recorded:
    """A tar member not read this time: its shard is unchanged since an output recorded all of its
    members (``shard_version``), so its row stands. Never decoded."""

    def read(self, limit: int | None) -> bytes:
        raise RuntimeError("a member of an unchanged shard is not read")


RECORDED = Recorded()


def is_shard_name(name: str) -> bool:
    return name.lower().endswith(SHARD_SUFFIXES)


def name_clash(first: str, second: TarShard) -> UsageError:
    """The refusal of a second shard with the file name of one already in the run (at ``first``):
    rows are keyed by shard name, so their keys would collide."""
    return UsageError(
        f"two tar shards are named {second.name} ({first} and {second.location}): "
        "their keys would collide; tag them in separate runs (another --out)"
    )


def same_shard(first: TarShard, second: TarShard) -> bool:
    """Whether two shards are one file named twice (``s/0.tar`` and ``./s/0.tar``): tagged once, not a clash."""
    if first.location == second.location:
        return True
    return not first.remote and not second.remote and os.path.realpath(first.location) == os.path.realpath(second.location)


def refuse_name_clashes(shards: Iterable[TarShard]) -> None:
    """Raise ``name_clash`` for two different shards of one file name among ``shards``: checked on
    the shards a run is given by name, so the mistake costs nothing rather than the shards tagged
    before the second one."""
    seen: dict[str, TarShard] = {}
    for shard in shards:
        first = seen.setdefault(shard.name, shard)
        if not same_shard(first, shard):
            raise name_clash(first.location, shard)


def shard_folder(folder: Path, *, hidden: bool = False) -> list[TarShard] | None:
    """The shards of an img2dataset-style folder, sorted by name, or ``None`` for a photo folder.

    A folder is a shard folder when its own listing has tar files and no images (its subfolders are
    not walked); anything else is walked for images as before, tar files ignored.
    """
    try:
        with os.scandir(folder) as listing:
            names = sorted(entry.name for entry in listing if _is_file(entry))
    except OSError:
        return None  # the walk reports an unreadable folder
    visible = [name for name in names if hidden or not name.startswith(".")]
    shards = [name for name in visible if is_shard_name(name)]
    if not shards or any(is_image_name(name) for name in visible):
        return None
    return [TarShard(os.path.join(folder, name), name) for name in shards]


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def member_key(name: str) -> str:
    """The webdataset key of a member: its path with everything from the file name's first dot cut
    (a leading dot, as in ``._x.jpg``, belongs to the name)."""
    folder, _, base = name.rpartition("/")
    stem = base[:1] + base[1:].split(".", 1)[0]
    return f"{folder}/{stem}" if folder else stem


def _clean(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def hidden_name(name: str) -> bool:
    """A member name with a hidden file or folder in it (``._x.jpg``, ``.thumbs/x.jpg``)."""
    return any(part.startswith(".") for part in PurePosixPath(name).parts)


def shard_members(
    shard: TarShard, *, hidden: bool = False, max_pixels: int | None = MAX_PIXELS
) -> Iterator[ImageRef]:
    """The image members of ``shard`` in archive order, each read into memory as it is yielded.

    ``max_pixels`` bounds what is read (``inputs.max_file_bytes``); a hidden member (a name part
    starting with ``.``, like macOS's ``._x.jpg``) is skipped unless ``hidden``.
    """
    limit = max_file_bytes(max_pixels)
    where = _where(shard)
    try:
        stream = shard.open()
    except RamtagError:
        raise
    except _read_errors(shard) as error:
        raise _unreadable(shard, error) from error
    with stream:
        sample = _Sample(shard.name, where)
        count = 0
        try:
            archive = tarfile.open(fileobj=stream, mode="r|*")
            for member in archive:
                name = _clean(member.name)
                if not member.isreg() or not is_image_name(name) or (not hidden and hidden_name(name)):
                    continue
                if member_key(name) != sample.key:  # a sample's members are consecutive
                    yield from sample.start(member_key(name))
                count += 1
                if limit is not None and member.size > limit:
                    yield from sample.add(name, Unusable(name, _too_large(member.size, limit), "too_large"))
                    continue
                try:
                    data = archive.extractfile(member).read()  # type: ignore[union-attr]
                except _FORMAT_ERRORS as error:
                    # The data ends (tarfile's "unexpected end of data", gzip's EOFError), or is damaged.
                    data, why = b"", str(error)
                    cut = isinstance(error, EOFError) or "unexpected end of data" in why
                else:
                    why, cut = f"{len(data):,} of {member.size:,} bytes", True
                if len(data) < member.size:
                    bad = Unusable(name, _cut_off(why), "truncated") if cut else \
                        Unusable(name, _damaged_member(why), "corrupt")
                    yield from sample.add(name, bad)
                    yield from sample.flush()
                    return  # nothing after it can be read
                yield from sample.add(name, InMemory(name, data), Stamp(member.size, int(member.mtime * 1_000_000)))
            yield from sample.flush()
            ending = _ending(archive)
            if ending is not None:
                message, kind = ending
                yield ImageRef(where, shard.name, Unusable(shard.name, message(count), kind))
        except _FORMAT_ERRORS as error:
            yield from sample.flush()
            yield ImageRef(where, shard.name, Unusable(shard.name, _damaged(count, error), "corrupt"))
        except _read_errors(shard) as error:  # over the network too: a connection dropped mid-shard
            raise _unreadable(shard, error) from error


@dataclass
class _Sample:
    """Keys for the image members of one webdataset sample (consecutive members with one key) that
    do not depend on their order: the sample's key goes to its image with a plain extension
    (``x.jpg``, not ``x.depth.png``; the first of those), or to its first image if none has one; the
    others are keyed by their full member name. Only a first image without a plain extension waits
    (for a plain one, or the sample's end): every other member is yielded as it is read."""

    shard: str
    where: Path
    key: str | None = None
    keyed: bool = False  # the sample's key is given
    held: tuple[str, InMemory | Unusable, Stamp | None] | None = None
    used: set[str] = field(default_factory=set)

    def start(self, key: str) -> Iterator[ImageRef]:
        yield from self.flush()
        self.key, self.keyed = key, False

    def add(self, name: str, source: InMemory | Unusable, stamp: Stamp | None = None) -> Iterator[ImageRef]:
        plain = name.rpartition("/")[2][1:].count(".") == 1
        if not self.keyed and plain:
            self.keyed = True
            yield from self._ref(member_key(name), name, source, stamp)
            yield from self.flush()
        elif not self.keyed and self.held is None:
            self.held = (name, source, stamp)
        else:
            yield from self._ref(name, name, source, stamp)

    def flush(self) -> Iterator[ImageRef]:
        """The member held back: keyed by the sample's key if none has taken it."""
        if self.held is not None:
            (name, source, stamp), self.held = self.held, None
            yield from self._ref(name if self.keyed else member_key(name), name, source, stamp)
            self.keyed = True

    def _ref(self, key: str, name: str, source: InMemory | Unusable, stamp: Stamp | None) -> Iterator[ImageRef]:
        # As written out (``text.printable``): a name that is not UTF-8 must not share a key.
        key = printable(f"{self.shard}/{key}")
        if key in self.used:
            key = printable(f"{self.shard}/{name}")
            if key in self.used:
                return  # the same member name again (an appended tar): the first counts
        self.used.add(key)
        yield ImageRef(self.where, key, source, stamp)


def members_or_error(
    shard: TarShard, *, hidden: bool = False, max_pixels: int | None = MAX_PIXELS
) -> Iterator[ImageRef]:
    """``shard_members``, with a shard that cannot be read as one error row (keyed by its name):
    what a single run wants, where a bad input is a row and the run goes on."""
    try:
        yield from shard_members(shard, hidden=hidden, max_pixels=max_pixels)
    except ShardReadError as error:
        where = Path(shard.location)
        yield ImageRef(where, shard.name, Unusable(shard.name, str(error), "unreadable"))


def recorded(shard: TarShard, keys: Iterable[str]) -> Iterator[ImageRef]:
    """``RECORDED`` refs for the members (``keys``) of a shard unchanged since an output read it."""
    where = _where(shard)
    return (ImageRef(where, key, RECORDED) for key in keys)


def _where(shard: TarShard) -> Path:
    """What a member's ``path`` says it came from: the shard's path, or its URL's."""
    return Path(shard.location) if not shard.remote else Path(shard.location.split("://", 1)[-1])


def _read_errors(shard: TarShard) -> tuple[type[BaseException], ...]:
    """What reading ``shard`` raises when it cannot be read: OSError, and over the network
    timeouts and aiohttp's errors too (its payload error, a dropped connection, is no OSError)."""
    if not shard.remote:
        return (OSError,)
    import asyncio

    try:
        import aiohttp
    except ImportError:
        return (OSError, asyncio.TimeoutError)
    return (OSError, asyncio.TimeoutError, aiohttp.ClientError)


def _unreadable(shard: TarShard, error: BaseException) -> ShardReadError:
    if shard.remote:  # the server's answer, or what became of the connection, in words
        reason = failure(error)[0]
        return ShardReadError(f"{shard.location}: cannot read this tar shard: {reason}"
                              + ("" if "run again" in reason else "; run again to retry it"))
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return ShardReadError(f"{shard.location}: cannot read this tar shard ({reason})")


def _too_large(size: int, limit: int) -> str:
    return (
        f"tar member too large: {size:,} bytes is over the limit of {limit:,} for images within "
        "--max-pixels (not read); raise --max-pixels if you trust the file"
    )


def _cut_off(why: str) -> str:
    return f"the tar shard ends inside this member ({why}): an interrupted download?"


def _ending(archive: tarfile.TarFile) -> tuple[Callable[[int], str], str] | None:
    """Why an archive whose reading stopped did not end as a tar ends (``None`` if it did): with the
    blocks of zeros every writer puts there, and nothing else. tarfile stops quietly at a shard cut
    off between two members (GNU tar does not notice either), and at a damaged header after the first."""
    stream = archive.fileobj  # decompressed, past the block that stopped the reading (if one did)
    trailing, zeros = stream.tell() - archive.offset, True  # type: ignore[union-attr]
    while block := stream.read(1 << 16):  # type: ignore[union-attr]
        trailing, zeros = trailing + len(block), zeros and not block.strip(b"\0")
    if trailing < tarfile.BLOCKSIZE:  # "truncated": a download to do again
        return (lambda count: (f"the tar shard ends after {_members(count)} without the blocks that end an "
                               "archive: cut short between two members (an interrupted download?); the members "
                               "before were read"), "truncated")
    if not zeros:  # "corrupt": reading it again gives the same
        return (lambda count: (f"damaged tar archive: reading stopped after {_members(count)} with more data "
                               "after them (a damaged header, or archives joined end to end); the members before "
                               "were read"), "corrupt")
    return None


def _damaged_member(why: str) -> str:
    return f"damaged tar shard: this member's data cannot be read ({why}); nothing after it was read"


def _members(count: int) -> str:
    return f"{count} image member" + ("" if count == 1 else "s")


def _damaged(count: int, error: BaseException) -> str:
    words = str(error) or type(error).__name__
    if count == 0:
        return f"not a readable tar archive ({words})"
    return f"damaged tar archive: reading stopped after {count} image members ({words})"
