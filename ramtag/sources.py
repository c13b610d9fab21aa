"""Inputs that are not plain local paths: brace patterns and URLs (fsspec).

``shards/{00000..00127}.tar`` is expanded by ramtag itself (users quote it, so it also works where
no shell expands it, and for URLs): ``{a..b}`` and ``{a..b..step}`` count, zero-padded when a
bound is written with leading zeros, and ``{x,y}`` lists alternatives. URLs (``s3://``, ``gs://``,
``file://``, ``memory://``, ...) are read through fsspec; the filesystems of cloud stores come
from their own packages (s3fs, gcsfs, adlfs), and a missing one is named in the error.

A URL is resolved like a local path: a tar shard, a folder of shards, a folder of images (walked,
keys relative to it) or one image (its key is the URL as written).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .inputs import ImageDecodeError, ImageRef, Item, is_image_name
from .shards import TarShard, is_shard_name, shard_folder

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

MAX_EXPANSIONS = 1_000_000
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_GROUP = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")
# The package that provides each common scheme's filesystem, for the error when it is missing.
_PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
    "abfss": "adlfs", "adl": "adlfs", "http": "aiohttp", "https": "aiohttp", "oci": "ocifs",
    "hdfs": "pyarrow", "sftp": "paramiko", "ssh": "paramiko", "smb": "smbprotocol",
}


def is_url(text: str) -> bool:
    return _URL.match(text) is not None


def is_plain_input(item: str | Path) -> bool:
    """True for an existing local file or folder that holds no tar shards: what discovery did
    before shards and URLs, cheap to walk again (e.g. to count images)."""
    if not os.path.exists(item):
        return False
    if os.path.isdir(item):
        return shard_folder(Path(item)) is None
    return not is_shard_name(os.fspath(item))


def expand_braces(pattern: str) -> list[str]:
    """Every string ``pattern`` stands for, in order; a pattern without braces stands for itself.

    Groups expand left to right (``{a,b}{1..2}`` → a1 a2 b1 b2); braces that are neither a range
    nor a list stay as they are.
    """
    for group in _GROUP.finditer(pattern):
        choices = _choices(group.group(1))
        if choices is None:
            continue
        head, tail = pattern[: group.start()], pattern[group.end() :]
        rests = expand_braces(tail)
        if len(choices) * len(rests) > MAX_EXPANSIONS:
            raise UsageError(f"{pattern}: stands for more than {MAX_EXPANSIONS:,} names; split it")
        return [head + choice + rest for choice in choices for rest in rests]
    return [pattern]


def _choices(body: str) -> list[str] | None:
    counted = _RANGE.match(body)
    if counted:
        first, last = int(counted.group(1)), int(counted.group(2))
        step = abs(int(counted.group(3) or 1)) or 1
        if abs(last - first) // step >= MAX_EXPANSIONS:
            raise UsageError(f"{{{body}}}: stands for more than {MAX_EXPANSIONS:,} names; split it")
        padded = any(len(b.lstrip("-")) > 1 and b.lstrip("-").startswith("0") for b in counted.group(1, 2))
        width = max(len(counted.group(1)), len(counted.group(2))) if padded else 0
        numbers = range(first, last + 1, step) if first <= last else range(first, last - 1, -step)
        return [f"{n:0{width}d}" for n in numbers]
    if "," in body:
        return body.split(",")
    return None


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the path within it; a missing package is named."""
    match = _URL.match(url)
    scheme = match.group(1).lower() if match else "file"
    try:
        import fsspec.core
    except ImportError:
        raise UsageError(f"{url}: URLs need fsspec: pip install fsspec") from None
    try:
        return fsspec.core.url_to_fs(url)
    except ImportError:
        package = _PACKAGES.get(scheme, f"the fsspec filesystem package for {scheme}://")
        raise UsageError(f"{url}: reading {scheme}:// URLs needs {package}: pip install {package}") from None
    except ValueError as error:
        raise UsageError(f"{url}: cannot use this URL ({error})") from None


@dataclass(frozen=True)
class RemoteFile:
    """An image file behind a URL, read whole by the decoding worker."""

    url: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.url.split("://", 1)[-1]).name

    def read(self, limit: int | None) -> bytes:
        try:
            fs, path = filesystem(self.url)
            with fs.open(path, "rb") as handle:
                data = handle.read(-1 if limit is None else limit + 1)
        except FileNotFoundError as error:
            raise ImageDecodeError("file not found: deleted or moved before it could be read", "missing") from error
        except UsageError:
            raise
        except Exception as error:  # noqa: BLE001 - each filesystem has its own errors
            raise ImageDecodeError(f"cannot read it ({type(error).__name__}: {error})", "unreadable") from error
        if limit is not None and len(data) > limit:
            raise ImageDecodeError(
                f"file too large: over {limit:,} bytes, more than any image within --max-pixels "
                "(not read); raise --max-pixels if you trust the file",
                "too_large",
            )
        return data


def resolve_input(item: str) -> list[Any]:
    """What an input that is not an existing local path stands for: the paths of a brace pattern
    (each must exist), or the shards and images behind a URL. Typos fail here, one line each."""
    expanded = expand_braces(item)
    if is_url(item):
        if len(expanded) == 1:
            return _resolve_url(item)
        filesystem(expanded[0])  # a missing package fails now; the shards are not looked up one by one
        return [remote_item(url, None) for url in expanded]
    if expanded == [item]:
        raise UsageError(f"input not found: {item}")
    for path in expanded:
        if not os.path.exists(path):
            raise UsageError(f"input not found: {path} (from {item}, {len(expanded)} names)")
    return expanded


def _resolve_url(url: str) -> list[Item]:
    fs, path = filesystem(url)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise UsageError(f"input not found: {url}") from None
    except Exception as error:  # noqa: BLE001 - credentials, network: each filesystem its own
        raise UsageError(f"{url}: cannot read it ({type(error).__name__}: {error})") from None
    if info.get("type") != "directory":
        return [remote_item(url, url)]
    return _remote_folder(fs, url, path)


def remote_item(url: str, key: str | None) -> Item:
    """One URL, not looked up: a shard (by its name), else an image keyed ``key`` (default: the URL itself)."""
    name = PurePosixPath(url.split("://", 1)[-1]).name
    if is_shard_name(name):
        return TarShard(url, name, remote=True)
    return ImageRef(Path(url.split("://", 1)[-1]), key or url, RemoteFile(url))


def _remote_folder(fs: AbstractFileSystem, url: str, path: str) -> list[Item]:
    """A folder URL, like a local folder: its shards if its own listing has tar files and no
    images, else every image under it (sorted, hidden names skipped), keyed relative to it."""
    base = url.rstrip("/")
    root = path.rstrip("/")
    found = sorted(fs.find(root, withdirs=False))
    relative = [name[len(root) :].lstrip("/") for name in found]
    visible = [name for name in relative if not any(p.startswith(".") for p in name.split("/"))]
    top = [name for name in visible if "/" not in name]
    shards = [name for name in top if is_shard_name(name)]
    if shards and not any(is_image_name(name) for name in top):
        return [TarShard(f"{base}/{name}", name, remote=True) for name in shards]
    return [
        ImageRef(Path(f"{root}/{name}"), name, RemoteFile(f"{base}/{name}"))
        for name in visible
        if is_image_name(name)
    ]
