"""JPEGs handed to the GPU still encoded: which files qualify, and what must travel with their bytes.

For ``--preprocess gpu`` the decoding workers do not decode a plain JPEG: they read its bytes and
its header (Pillow parses only the markers before the image data), check its pixel count, and hand
back the bytes with its EXIF orientation, so the main process decodes a whole batch at once on the
GPU (``devicejpeg``). Everything else (other formats, CMYK JPEGs, files whose header Pillow cannot
read) is decoded by Pillow as usual, so every failure still gets Pillow's words.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from .refs import ImageDecodeError, too_large

JPEG_MAGIC = b"\xff\xd8\xff"
_MODES = frozenset({"RGB", "L"})  # what nvJPEG decodes to RGB as Pillow's convert("RGB") does
_QUARTER_TURNS = frozenset({5, 6, 7, 8})  # orientations that swap width and height
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG's bytes and what decoding them needs: EXIF orientation (1 to 8) and upright size."""

    data: bytes
    name: str  # the file's name, for the words of an error if decoding it fails
    orientation: int
    width: int
    height: int
    # Whether the EXIF block holds the orientation (Pillow falls back to XMP's): a decoder that
    # reads EXIF turns the image itself then (TorchCodec's), and only then.
    in_exif: bool = False


def encoded_jpeg(data: bytes, name: str, *, max_pixels: int | None) -> EncodedJpeg | None:
    """``data`` as an ``EncodedJpeg`` when it is a plain RGB or greyscale JPEG; ``None`` when it
    should be decoded by Pillow. A JPEG over ``max_pixels`` is refused from its header."""
    if not data.startswith(JPEG_MAGIC):
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode not in _MODES:
                return None
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise too_large(width * height, max_pixels)
            orientation = image.getexif().get(_ORIENTATION, 1)  # EXIF, or XMP without it, as Pillow
            in_exif = "exif" in image.info and _ORIENTATION in _exif_only(image.info["exif"])
    except ImageDecodeError:
        raise
    except Exception:  # noqa: BLE001 - a header Pillow cannot parse: its full decode says why
        return None
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1  # Pillow's exif_transpose leaves an image with another value as it is
    if orientation in _QUARTER_TURNS:
        width, height = height, width
    return EncodedJpeg(data, name, orientation, width, height, in_exif)


def _exif_only(block: bytes) -> Image.Exif:
    exif = Image.Exif()
    exif.load(block)
    return exif
