"""sha256 of large files, remembered by (path, size, mtime) so a 3 GB checkpoint is hashed once."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .atomic import write_atomically
from .paths import cache_dir

_CHUNK = 8 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _memo_path() -> Path:
    return cache_dir() / "hashes.json"


def sha256_file(path: Path, *, remember: bool = True) -> str:
    """The file's sha256; reused from the memo while its size and mtime are unchanged."""
    path = Path(path)
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    memo_file = _memo_path()
    memo: dict[str, str] = {}
    if remember:
        try:
            memo = json.loads(memo_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            memo = {}
        if key in memo:
            return memo[key]
    value = sha256_of(path)
    if remember:
        memo[key] = value
        try:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(memo_file, json.dumps(memo, indent=0, sort_keys=True), durable=False)
        except OSError:
            pass  # a read-only cache only costs a re-hash next time
    return value
