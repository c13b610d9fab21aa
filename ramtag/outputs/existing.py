"""What is at an ``--out`` before a run writes there: checked before the model loads, so that a
mistake costs a second, and a photo or another program's file is never written over."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..inputs.refs import is_image_name


def check_not_an_input(out: Path, inputs: tuple[str, ...]) -> None:
    """An existing ``--out`` that is a photo (by its name) or a file given to tag is never written
    over, ``--overwrite`` or not: a run replaced the photo with its output."""
    given = {os.path.realpath(path) for path in inputs if os.path.isfile(path)}
    if is_image_name(out.name) or os.path.realpath(out) in given:
        raise UsageError(f"--out {out} is {'an image' if is_image_name(out.name) else 'one of the files to tag'}; "
                         "name a new file for the output (tags.parquet, tags.csv, tags.jsonl)")


def parquet_ends(path: Path) -> bool:
    """Whether ``path`` starts and ends as a Parquet file does (its magic number)."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size < 8:
                return False
            head = handle.read(4)
            handle.seek(-4, os.SEEK_END)
            return head == handle.read(4) == b"PAR1"
    except OSError:  # unreadable: opening it later says why
        return True


def written_by_ramtag(path: Path) -> bool:
    """Whether the Parquet file ``path`` holds ramtag's metadata (an unreadable footer: opening it
    later says what is wrong)."""
    import pyarrow.parquet as pq

    from .formats import METADATA_KEY

    try:
        return METADATA_KEY.encode() in (pq.read_schema(path).metadata or {})
    except Exception:  # noqa: BLE001 - whatever pyarrow raises on a damaged footer
        return True


def existing_ancestor(folder: Path) -> Path:
    """``folder``, or the nearest folder above it that exists (``.`` at the end)."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return Path(".")
