"""The converted-weights cache's files, read without torch: their ramtag metadata (safetensors'
JSON header), for loading (``load``) and for ``ramtag models list``."""

from __future__ import annotations

import json
from pathlib import Path

from ..paths import cache_dir


def converted_dir() -> Path:
    return cache_dir() / "converted"


def converted_metadata(path: Path) -> dict[str, str] | None:
    """The ramtag metadata of a safetensors file, or None for any other file."""
    if path.suffix != ".safetensors":
        return None
    try:
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if not 0 < header_len < 100_000_000:
                return None
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError):
        return None
    metadata = header.get("__metadata__") or {}
    return metadata if metadata.get("format") == "ramtag" else None


def content_record(path: Path) -> Path:
    """Where a converted copy's sha256, taken when it was written, is kept: beside it."""
    return path.with_name(path.name + ".sha256")
