"""Camera raw files (CR2, NEF, ARW, DNG...) through LibRaw (rawpy): upright pixels for the model.

A raw holds sensor data, not an image. Most also carry the JPEG their camera made of it, which is
what photo software shows in its grid; when that preview is at least the model's input size on
both sides, it is used as it is (a few milliseconds). Otherwise (no preview, a thumbnail too small,
or ``demosaic`` asked for) LibRaw develops the sensor data at half size with the camera's white
balance. Either way the raw's own orientation is applied, and ``original_size`` reports the upright
size of the full sensor image, not of the preview.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from .refs import RAW_DECODES, ImageDecodeError, is_raw_name

# LibRaw's orientation codes (``sizes.flip``) as the turn that makes the image upright.
_TURNS = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.ROTATE_90, 6: Image.Transpose.ROTATE_270}
_MAX_PREVIEW_STRETCH = 1.5  # a 16:9 preview of a 3:2 sensor is 1.19; a 1:3 strip of a 4:3 one 4
ORIGINAL_SIZE = "ramtag_original_size"  # image.info key: the upright size of the file's full image
DECODED_FROM = "ramtag_raw"  # image.info key: "preview" or "demosaic"


@dataclass(frozen=True)
class RawOptions:
    """How raws are decoded: ``mode`` (one of ``RAW_DECODES``) and the model's input size, the
    smallest preview used."""

    mode: str = "auto"
    min_size: int = 384

    def __post_init__(self) -> None:
        if self.mode not in RAW_DECODES:
            raise ValueError(f"raw decode mode must be one of {RAW_DECODES}, not {self.mode!r}")


def is_proprietary_raw(name: str | os.PathLike[str]) -> bool:
    """A raw in its camera maker's own format: everything raw but DNG. Never written to."""
    return is_raw_name(name) and os.path.splitext(os.fspath(name))[1].lower() != ".dng"


def describe(options: RawOptions) -> str:
    """How raws are decoded, in words, for the output's metadata."""
    if options.mode == "demosaic":
        return "LibRaw demosaic at half size, camera white balance"
    return (
        f"embedded preview when at least {options.min_size} px on both sides, "
        "else LibRaw demosaic at half size, camera white balance"
    )


def decode_raw(
    where: Path | bytes, named: Path | PurePosixPath, *, max_pixels: int | None, options: RawOptions
) -> Image.Image:
    """The raw at ``where`` (a path, or the file's bytes) as an upright RGB image."""
    try:
        import rawpy
    except ImportError as error:
        raise ImageDecodeError("camera raw files need rawpy: pip install rawpy", "unsupported") from error
    try:
        source = io.BytesIO(where) if isinstance(where, bytes) else os.fspath(where)
        with rawpy.imread(source) as raw:
            sizes = raw.sizes
            if max_pixels is not None and sizes.width * sizes.height > max_pixels:
                from .refs import too_large

                raise too_large(sizes.width * sizes.height, max_pixels)
            turn = _TURNS.get(sizes.flip)
            upright = (sizes.height, sizes.width) if sizes.flip in (5, 6) else (sizes.width, sizes.height)
            image = _preview(raw, options, max_pixels) if options.mode == "auto" else None
            if image is not None:
                image = image.transpose(turn) if turn is not None else image
                image.info[DECODED_FROM] = "preview"
            else:
                image = _demosaic(raw, options)
                image.info[DECODED_FROM] = "demosaic"
    except rawpy.LibRawFileUnsupportedError as error:
        raise ImageDecodeError(
            "LibRaw cannot read this raw file: its format or camera is not supported "
            f"(LibRaw {_version(rawpy)}), or the file is cut off early",
            "unsupported",
        ) from error
    except (rawpy.LibRawError, rawpy.NotSupportedError) as error:
        words = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) else str(error)
        raise ImageDecodeError(
            f"LibRaw could not read the raw data ({words or type(error).__name__}): "
            "the file is corrupt, cut off early, or not a camera raw",
            "corrupt",
        ) from error
    except MemoryError as error:
        raise ImageDecodeError("not enough memory to develop this raw file", "memory") from error
    image.info[ORIGINAL_SIZE] = upright
    return image


def _preview(raw: object, options: RawOptions, max_pixels: int | None) -> Image.Image | None:
    """The embedded preview as RGB, unrotated, when it is large enough; else None."""
    import rawpy

    try:
        thumb = raw.extract_thumb()  # type: ignore[attr-defined]
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    except rawpy.LibRawError:
        return None  # a damaged preview: the sensor data may still be fine
    if thumb.format == rawpy.ThumbFormat.BITMAP:
        image = Image.fromarray(thumb.data)
    else:
        try:
            with Image.open(io.BytesIO(thumb.data)) as opened:
                if max_pixels is not None and opened.width * opened.height > max_pixels:
                    return None
                opened.load()
                # The preview's own EXIF orientation is ignored: the raw's applies to both.
                image = opened.convert("RGB")
        except (OSError, ValueError, SyntaxError):
            return None
    if min(image.size) < options.min_size:
        return None
    sensor = raw.sizes.width / raw.sizes.height  # type: ignore[attr-defined]
    shape = image.width / image.height
    if max(shape / sensor, sensor / shape) > _MAX_PREVIEW_STRETCH:
        return None  # a part of the preview (one strip of several) or another picture: not this one
    return image.convert("RGB") if image.mode != "RGB" else image


def _demosaic(raw: object, options: RawOptions) -> Image.Image:
    """The sensor data developed (half size when that still covers the model's input), upright."""
    sizes = raw.sizes  # type: ignore[attr-defined]
    half = min(sizes.width, sizes.height) // 2 >= options.min_size
    pixels = raw.postprocess(  # type: ignore[attr-defined]
        half_size=half, use_camera_wb=True, output_bps=8, no_auto_bright=False
    )
    return Image.fromarray(pixels)


def _version(rawpy: object) -> str:
    version = getattr(rawpy, "libraw_version", None)
    return ".".join(str(part) for part in version) if isinstance(version, tuple) else "?"
