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
from typing import TYPE_CHECKING

from PIL import Image

from .refs import ImageDecodeError, too_large

if TYPE_CHECKING:
    import torch

JPEG_MAGIC = b"\xff\xd8\xff"
_MODES = frozenset({"RGB", "L"})  # what nvJPEG decodes to RGB as Pillow's convert("RGB") does
_QUARTER_TURNS = frozenset({5, 6, 7, 8})  # orientations that swap width and height
_ORIENTATION = 0x0112
_END = b"\xff\xd9"  # end of image
_END_WITHIN = 1024  # bytes from the end it must be found in (padding after it is common)
_START_OF_SCAN = 0xDA


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG's bytes and what decoding them needs: EXIF orientation (1 to 8) and upright size."""

    data: bytes | torch.Tensor  # the file's bytes; in a batch, a uint8 view of the batch's (pipeline)
    name: str  # the file's name, for the words of an error if decoding it fails
    orientation: int
    width: int
    height: int


def encoded_jpeg(data: bytes, name: str, *, max_pixels: int | None) -> EncodedJpeg | None:
    """``data`` as an ``EncodedJpeg`` when it is a plain, whole RGB or greyscale JPEG; ``None`` when
    Pillow should decode it. A JPEG over ``max_pixels`` is refused from its header.

    The bytes handed on have their EXIF segment renamed, so that no decoder turns the image by an
    EXIF reader of its own: the orientation applied is Pillow's (``devicejpeg.upright``), whatever
    the decoder (TorchCodec's reads EXIF, but not where Pillow does in every file).
    """
    if not data.startswith(JPEG_MAGIC) or data.rfind(_END, max(0, len(data) - _END_WITHIN)) < 0:
        return None  # not a JPEG, or cut off (a decoder on the GPU might not say so): Pillow's
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "JPEG" or image.mode not in _MODES:
                return None
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise too_large(width * height, max_pixels)
            orientation = image.getexif().get(_ORIENTATION, 1)  # EXIF, or XMP without it, as Pillow
    except ImageDecodeError:
        raise
    except Exception:  # noqa: BLE001 - a header Pillow cannot parse: its full decode says why
        return None
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1  # Pillow's exif_transpose leaves an image with another value as it is
    if orientation in _QUARTER_TURNS:
        width, height = height, width
    return EncodedJpeg(_exif_renamed(data), name, orientation, width, height)


def _exif_renamed(data: bytes) -> bytes:
    """``data`` with every APP1 segment holding EXIF renamed APP15 (which decoders skip)."""
    found, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
            continue
        if marker == _START_OF_SCAN or not 0xC0 <= marker <= 0xFE or 0xD0 <= marker <= 0xD9:
            break  # the image data begins (or the header ends oddly): no metadata after this
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker == 0xE1 and data[position + 4 : position + 10] == b"Exif\x00\x00":
            found.append(position + 1)
        position += 2 + length
    if not found:
        return data
    renamed = bytearray(data)
    for at in found:
        renamed[at] = 0xEF
    return bytes(renamed)
