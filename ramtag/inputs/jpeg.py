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
    from pathlib import Path

    import torch

JPEG_MAGIC = b"\xff\xd8\xff"
_MODES = frozenset({"RGB", "L"})  # what nvJPEG decodes to RGB as Pillow's convert("RGB") does
_QUARTER_TURNS = frozenset({5, 6, 7, 8})  # orientations that swap width and height
_ORIENTATION = 0x0112
_END = b"\xff\xd9"  # end of image
_SCAN = b"\xff\xda"  # start of a scan
_END_WITHIN = 1024  # bytes from the end it must be found in (padding after it is common)
_START_OF_SCAN, _END_OF_IMAGE, _APP1, _APP15 = 0xDA, 0xD9, 0xE1, 0xEF
_STANDALONE = frozenset({0x00, 0x01, *range(0xD0, 0xD9)})  # markers without a length: RSTn, SOI, TEM


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG's bytes and what decoding them needs: EXIF orientation (1 to 8) and upright size."""

    data: bytes | torch.Tensor  # the file's bytes; in a batch, a uint8 view of the batch's (pipeline)
    name: str  # the file's name, for the words of an error if decoding it fails
    orientation: int
    width: int
    height: int
    renamed: tuple[int, ...] = ()  # where ``data`` has APP15 for the file's APP1 (``original``)


def encoded_jpeg(data: bytes, name: str, *, max_pixels: int | None, upright: bool = True) -> EncodedJpeg | None:
    """``data`` as an ``EncodedJpeg`` when it is a plain, whole RGB or greyscale JPEG; ``None`` when
    Pillow should decode it. A JPEG over ``max_pixels`` is refused from its header.

    The bytes handed on have their APP1 segments (EXIF, XMP) renamed APP15, which decoders skip, so
    that no decoder turns the image by an EXIF reader of its own: the orientation applied is
    Pillow's (``devicejpeg.upright``), whatever the decoder (TorchCodec's reads EXIF, but not
    always where and as Pillow does). ``original`` gives the file's own bytes back. ``upright``
    False: orientation 1 whatever the file says (``--ignore-orientation``).
    """
    if not data.startswith(JPEG_MAGIC):
        return None
    header = _header(data)
    if header is None or data.rfind(_END, max(header[0], len(data) - _END_WITHIN)) < 0:
        return None  # no image data, or cut off (a decoder on the GPU might not say so): Pillow's
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
    if not upright or not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1  # Pillow's exif_transpose leaves an image with another value as it is
    if orientation in _QUARTER_TURNS:
        width, height = height, width
    renamed = bytearray(data) if header[1] else data
    for at in header[1]:
        renamed[at] = _APP15
    return EncodedJpeg(bytes(renamed), name, orientation, width, height, tuple(header[1]))


def original(jpeg: EncodedJpeg) -> bytes:
    """The file's own bytes (its APP1 segments named so again), for Pillow."""
    data = jpeg.data if isinstance(jpeg.data, bytes) else jpeg.data.numpy().tobytes()
    if not jpeg.renamed:
        return data
    restored = bytearray(data)
    for at in jpeg.renamed:
        restored[at] = _APP1
    return bytes(restored)


def _header(data: bytes) -> tuple[int, list[int]] | None:
    """Where the image data begins (the start-of-scan marker) and where each APP1 segment's
    marker byte is, walking the segments as libjpeg does (bytes between segments skipped); ``None``
    when the data ends, or the image does, before a scan begins."""
    app1, position, end = [], 2, len(data)
    while position + 1 < end:
        if data[position] != 0xFF:  # junk between segments
            position = data.find(b"\xff", position)
            if position < 0:
                return None
            continue
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before the marker
            position += 1
        elif marker in _STANDALONE:
            position += 2
        elif marker == _END_OF_IMAGE:
            return None
        elif marker == _START_OF_SCAN:
            return position, app1
        else:
            if marker == _APP1:
                app1.append(position + 1)
            length = int.from_bytes(data[position + 2 : position + 4], "big")
            position += 2 + max(length, 2)
    return None


def end_marker_added(where: Path | io.BytesIO) -> bytes | None:
    """A JPEG that lacks only its end marker, with the marker: ``None`` if more is missing.

    Decoders read such a file whole (every viewer shows it), but Pillow calls it truncated. Adding
    the marker to a file cut off in its image data would decode too, the rest made up; so it is
    decoded twice, with 64 bytes of zeros and of ones before the marker: where the image data is
    whole, the decoder skips them (the same pixels twice), where it is cut off it decodes them.
    Only a file of one scan (baseline, as cameras and scanners write): a progressive file cut off
    between two of its scans passes that test with the blurry image of the scans before.
    """
    try:
        data = where.getvalue() if isinstance(where, io.BytesIO) else where.read_bytes()
    except OSError:
        return None
    if not data.startswith(JPEG_MAGIC) or data.rstrip(b"\x00").endswith(_END):
        return None
    header = _header(data)  # a marker cannot occur in image data (0xFF is stuffed): another scan's
    if header is None or data.find(_SCAN, header[0] + 2) >= 0:
        return None
    decoded = []
    for filler in (b"\x00" * 64, b"\xff\x00" * 32):  # 0xFF is stuffed in image data: ones, no marker
        try:
            with Image.open(io.BytesIO(data + filler + _END)) as image:
                image.load()
                decoded.append(image.tobytes())
        except Exception:  # noqa: BLE001 - not decodable even so: the file's own error stands
            return None
    return data + _END if decoded[0] == decoded[1] else None
