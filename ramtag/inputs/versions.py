"""A tar shard's version: what tells its content from another's without reading it, so that a
re-run can leave an unchanged shard unread (``outputs.shardversions``, ``engine.units``)."""

from __future__ import annotations

import os

from .fs import filesystem
from .shards import TarShard

# What a store says about a remote file that changes whenever its content does (fsspec's info:
# HTTP's headers, S3, GCS, Azure); with the size, it stands for the shard's version.
_VERSION_FIELDS = ("ETag", "etag", "Last-Modified", "LastModified", "last_modified", "updated", "mtime", "md5Hash")
GONE = "gone"


def shard_version(shard: TarShard) -> str | None:
    """What tells this shard's content from another's without reading it: size and modification
    time of a local file; over a URL, the size with the store's ETag or modification time; ``GONE``
    where the file is not there (an HTTP 404). ``None`` when there is nothing to go by (a server
    sending neither, a shard that cannot be reached)."""
    if not shard.remote:
        try:
            info = os.stat(shard.location)
        except FileNotFoundError:
            return GONE
        except OSError:
            return None
        return f"{info.st_size}:{info.st_mtime_ns // 1000}"
    try:
        fs, path = filesystem(shard.location)
        info = fs.info(path)
    except FileNotFoundError:
        return GONE  # unlike any version: a committed shard is tagged again, and says why it cannot be
    except Exception:  # noqa: BLE001 - any failure only means reading the shard, which says why
        return None
    size = info.get("size")
    version = next((info[name] for name in _VERSION_FIELDS if info.get(name) not in (None, "")), None)
    return f"{size}:{version}" if isinstance(size, int) and version is not None else None
