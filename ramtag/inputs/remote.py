"""Inputs that are not existing local paths: brace patterns of paths, and URLs.

A URL is resolved like a local path: a tar shard, a folder of shards, a folder of images (walked,
keys relative to it) or one image (its key is the URL as written).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .fs import failure, filesystem, is_url, open_url
from .patterns import expand_braces
from .refs import ImageDecodeError, ImageRef, is_image_name
from .shards import Item, TarShard, is_shard_name

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

@dataclass(frozen=True)
class RemoteFile:
    """An image file behind a URL, read whole by the decoding worker."""

    url: str

    @property
    def name(self) -> str:
        return PurePosixPath(self.url.split("://", 1)[-1]).name

    def read(self, limit: int | None) -> bytes:
        try:
            with open_url(self.url) as handle:
                data = _read_up_to(handle, None if limit is None else limit + 1)
        except UsageError:
            raise
        except Exception as error:  # noqa: BLE001 - each filesystem has its own errors
            raise ImageDecodeError(*failure(error)) from error
        if limit is not None and len(data) > limit:
            raise ImageDecodeError(
                f"file too large: over {limit:,} bytes, more than any image within --max-pixels "
                "(not read); raise --max-pixels if you trust the file",
                "too_large",
            )
        return data


def _read_up_to(handle: Any, size: int | None) -> bytes:
    """All of ``handle`` or its first ``size`` bytes: a streamed read returns what has arrived so far."""
    chunks, got = [], 0
    while size is None or got < size:
        chunk = handle.read(-1 if size is None else size - got)
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def resolve_input(item: str) -> list[Any]:
    """What an input that is not an existing local path stands for: the paths of a brace pattern
    (each must exist), or the shards and images behind a URL. Typos fail here, one line each."""
    expanded = expand_braces(item)
    if is_url(item):
        if len(expanded) == 1:
            return _resolve_url(item)
        for url in expanded:
            _refuse_http_folder(url)
        filesystem(expanded[0])  # a missing package fails now; the shards are not looked up one by one
        return [remote_item(url, None) for url in expanded]
    if expanded == [item]:
        hint = " (ramtag expands {a..b} and {a,b}; * and ? are the shell's: leave them unquoted)" \
            if set("*?[") & set(item) else " (a list of paths on stdin: --files-from -)" if item == "-" else ""
        raise UsageError(f"input not found: {item}{hint}")
    missing = [path for path in expanded if not os.path.exists(path)]
    shards = all(is_shard_name(path) for path in missing)
    if missing and (2 * len(missing) > len(expanded) or not shards):
        there = "none there" if len(missing) == len(expanded) else f"{len(missing)} not there"
        hint = "; a pattern may miss a few shards, each then an error row, not most" \
            if shards and len(missing) < len(expanded) else ""
        raise UsageError(f"input not found: {missing[0]} (from {item}, {len(expanded)} names, {there}{hint})")
    return expanded  # a shard missing from a pattern (a collection with gaps): its error row, as over HTTP


def _refuse_http_folder(url: str) -> None:
    if url.lower().startswith(("http://", "https://")) and url.split("?", 1)[0].endswith("/"):
        raise UsageError(f"{url}: a folder over HTTP cannot be listed; name its shards with a pattern "
                         f"({url}{{00000..00099}}.tar) or its images")


def _resolve_url(url: str) -> list[Item]:
    _refuse_http_folder(url)
    fs, path = filesystem(url)
    try:
        info = fs.info(path)
    except Exception as error:  # noqa: BLE001 - credentials, network: each filesystem its own
        why, kind = failure(error)
        raise UsageError(f"input not found: {url}" if kind == "missing" else f"{url}: {why}") from None
    if info.get("type") != "directory":
        return [remote_item(url, url)]
    return _remote_folder(fs, url, path)


def remote_item(url: str, key: str | None) -> Item:
    """One URL, not looked up: a shard (by its name), else an image keyed ``key`` (default: the URL itself)."""
    name = PurePosixPath(url.split("://", 1)[-1]).name
    if is_shard_name(name):
        return TarShard(url, name, remote=True)
    return remote_image(url, key or url)


def remote_image(url: str, key: str) -> ImageRef:
    """The image behind ``url``, keyed ``key``, read whole when decoded (``RemoteFile``)."""
    return ImageRef(Path(url.split("://", 1)[-1]), key, RemoteFile(url))


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


def ref_to_data(ref: ImageRef) -> dict[str, Any]:
    """A ref of a local file or a URL as plain data (JSON), for a worker on another machine."""
    if isinstance(ref.source, RemoteFile):
        return {"key": ref.key, "url": ref.source.url}
    if ref.source is not None:
        raise ValueError(f"{ref.key}: only files and URLs travel to workers")  # a bug, not a user's
    # Absolute: a worker runs in another folder (Ray's actors: where `ray start` ran); the key stays as written.
    return {"key": ref.key, "path": os.path.abspath(ref.path), **({"walked": True} if ref.walked else {})}


def ref_from_data(data: dict[str, Any]) -> ImageRef:
    """The ref ``ref_to_data`` described: the same one a local run would have."""
    if "url" in data:
        return remote_image(data["url"], data["key"])
    return ImageRef(Path(data["path"]), data["key"], walked=bool(data.get("walked")))
