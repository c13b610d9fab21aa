"""Finding the images to tag and decoding them, in layers that only import downwards:

- ``refs``: ``ImageRef``, the size limits, ``ImageDecodeError`` (the bottom);
- ``decode``: one image into upright pixels; ``folders``: local folder walks; ``fs``: URLs through
  fsspec; ``patterns``: brace patterns; ``shards``: tar shards; ``remote``: URL and pattern inputs;
- ``discover``: every input of a run as one stream of refs (the top).

The names most callers need are re-exported here, each loaded with its module when first used: the
command line takes a size limit from ``refs`` without paying for Pillow and every input kind.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .decode import decode_bytes, decode_image, decode_ref, original_size
    from .discover import discover, discover_items, image_refs, is_plain_input, select
    from .folders import walk_folder
    from .refs import IMAGE_EXTENSIONS, MAX_PIXELS, ImageDecodeError, ImageRef, ImageSource, is_image_name, max_file_bytes
    from .shards import Item, TarShard

_HOMES = {
    "decode": ("decode_bytes", "decode_image", "decode_ref", "original_size"),
    "discover": ("discover", "discover_items", "image_refs", "is_plain_input", "select"),
    "folders": ("walk_folder",),
    "refs": ("IMAGE_EXTENSIONS", "MAX_PIXELS", "ImageDecodeError", "ImageRef", "ImageSource", "is_image_name",
             "max_file_bytes"),
    "shards": ("Item", "TarShard"),
}
_HOME = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "ImageDecodeError", "ImageRef", "ImageSource", "Item", "TarShard",
    "decode_bytes", "decode_image", "decode_ref", "discover", "discover_items", "image_refs",
    "is_image_name", "is_plain_input", "max_file_bytes", "original_size", "select", "walk_folder",
]


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
