"""Finding the images to tag and decoding them, in layers that only import downwards:

- ``refs``: ``ImageRef``, the size limits, ``ImageDecodeError`` (the bottom);
- ``decode``: one image into upright pixels; ``folders``: local folder walks; ``fs``: URLs through
  fsspec; ``patterns``: brace patterns; ``shards``: tar shards; ``remote``: URL and pattern inputs;
- ``discover``: every input of a run as one stream of refs (the top).

The names most callers need are re-exported here; ``decode``'s are loaded when first used, so that
the command line reads its options without importing Pillow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .discover import discover, discover_items, image_refs, is_plain_input, select
from .folders import walk_folder
from .refs import IMAGE_EXTENSIONS, MAX_PIXELS, ImageDecodeError, ImageRef, ImageSource, is_image_name, max_file_bytes
from .shards import Item, TarShard

if TYPE_CHECKING:
    from .decode import decode_bytes, decode_image, decode_ref, original_size

_DECODE_NAMES = ("decode_bytes", "decode_image", "decode_ref", "original_size")

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "ImageDecodeError", "ImageRef", "ImageSource", "Item", "TarShard",
    "decode_bytes", "decode_image", "decode_ref", "discover", "discover_items", "image_refs",
    "is_image_name", "is_plain_input", "max_file_bytes", "original_size", "select", "walk_folder",
]


def __getattr__(name: str) -> Any:
    if name not in _DECODE_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.decode"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_DECODE_NAMES))
