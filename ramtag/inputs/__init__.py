"""Finding the images to tag and decoding them, in layers that only import downwards:

- ``refs``: ``ImageRef``, the size limits, ``ImageDecodeError`` (the bottom);
- ``decode``: one image into upright pixels; ``folders``: local folder walks; ``fs``: URLs through
  fsspec; ``patterns``: brace patterns; ``shards``: tar shards; ``remote``: URL and pattern inputs;
- ``discover``: every input of a run as one stream of refs (the top).

The names most callers need are re-exported here.
"""

from .decode import decode_bytes, decode_image, decode_ref, original_size
from .discover import discover, discover_items, image_refs, is_plain_input, select
from .folders import walk_folder
from .refs import IMAGE_EXTENSIONS, MAX_PIXELS, ImageDecodeError, ImageRef, ImageSource, is_image_name, max_file_bytes
from .shards import Item, TarShard

__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "ImageDecodeError", "ImageRef", "ImageSource", "Item", "TarShard",
    "decode_bytes", "decode_image", "decode_ref", "discover", "discover_items", "image_refs",
    "is_image_name", "is_plain_input", "max_file_bytes", "original_size", "select", "walk_folder",
]
