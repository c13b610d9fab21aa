"""Which sha256 the released weights must have, and whether they have it.

The reference is, in this order: the sha256 that once matched the Hub's for this very file
(``verified_weights.json`` in ramtag's cache, so later runs neither re-hash it nor ask again); the
name the Hugging Face cache gives the file's blob, which is the LFS sha256 the Hub sent with it (so a
cache copied to another machine is checked there too, offline); the Hub's own listing, online.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import write_atomically
from ..errors import ChecksumError
from ..hashing import sha256_file
from ..paths import cache_dir
from ..version import __version__
from .registry import WeightsSource


def blob_sha256(path: Path) -> str | None:
    """The sha256 the Hugging Face cache names a large file by: its snapshot entry links to (or,
    copied with ``cp -rL``, sits beside) ``blobs/<sha256>``, the LFS sha256 the Hub sent with it."""
    resolved = path.resolve()
    if resolved.parent.name == "blobs" and _is_sha256(resolved.name):
        return resolved.name
    snapshot = path.parent  # a copy that followed the links: the blob of the same size, if only one
    if snapshot.parent.name != "snapshots":
        return None
    blobs = snapshot.parent.parent / "blobs"
    try:
        size = path.stat().st_size
        named = [entry.name for entry in blobs.iterdir() if _is_sha256(entry.name) and entry.stat().st_size == size]
    except OSError:
        return None
    return named[0] if len(named) == 1 else None


def _is_sha256(name: str) -> bool:
    return len(name) == 64 and all(char in "0123456789abcdef" for char in name)


def verify_download(source: WeightsSource, path: Path) -> None:
    actual = sha256_file(path)  # memo: a 3 GB file is hashed once per (path, size, mtime)
    checked = remembered(path)
    if actual in (checked, blob_sha256(path)):
        if checked != actual:
            remember_verified(path, actual)
        return
    expected = hub_sha256(source, path)
    if expected is None:
        return  # the Hub lists no sha256 (or is out of reach): nothing to compare with
    if actual != expected:
        raise ChecksumError(
            f"{path.resolve()}: sha256 {actual[:12]}… does not match {expected[:12]}… listed by the Hub for"
            f" {source.display}; delete that file and run `ramtag models download {source.name}` again"
        )
    remember_verified(path, actual)


def hub_sha256(source: WeightsSource, path: Path) -> str | None:
    """The LFS sha256 the Hub lists for the file, at the commit it was downloaded from when known."""
    from huggingface_hub import HfApi

    # hf_hub_download returns ``.../snapshots/<commit>/<filename>``: ask about that very commit.
    snapshot = path.parent
    revision = snapshot.name if snapshot.parent.name == "snapshots" and len(snapshot.name) == 40 else None
    try:
        infos = HfApi(library_name="ramtag", library_version=__version__).get_paths_info(
            source.repo_id, [source.filename], repo_type=source.repo_type, revision=revision
        )
    except hub_errors():
        return None
    for info in infos:
        lfs = getattr(info, "lfs", None)
        if getattr(info, "path", None) == source.filename and lfs is not None:
            return getattr(lfs, "sha256", None) or None
    return None


def _verified_file() -> Path:
    return cache_dir() / "verified_weights.json"


def read_verified() -> dict[str, str]:
    """Resolved checkpoint path -> sha256 that once matched the Hub's (with the hash memo, no re-hash)."""
    try:
        data = json.loads(_verified_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered(path: Path) -> str | None:
    """The sha256 ``path`` had when it was checked against the Hub's, if it was."""
    return read_verified().get(str(path.resolve()))


def remember_verified(path: Path, sha256: str) -> None:
    record = read_verified()
    record[str(path.resolve())] = sha256
    _write_atomic(_verified_file(), json.dumps(record, indent=1, sort_keys=True).encode("utf-8"))


def hub_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises for a failed download or query.

    Its HTTP client changed over versions (requests, whose errors are OSErrors, then httpx/httpx2);
    ``huggingface_hub.utils.httpx`` names the one in use where there is one.
    """
    from huggingface_hub.utils import EntryNotFoundError

    try:
        from huggingface_hub.utils import httpx

        transport: tuple[type[BaseException], ...] = (httpx.HTTPError,)
    except ImportError:
        transport = ()
    return (OSError, EntryNotFoundError, *transport)


def _write_atomic(target: Path, payload: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, payload, durable=False)
    except OSError:
        pass  # a read-only cache only costs one more Hub query next time
