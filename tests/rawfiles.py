"""Real DNG files for tests, made from synthetic sensor data by DNG writers (not by ramtag).

``plain_dng`` is written by PiDNG (a DNG library): one IFD of Bayer data, no preview.
``dng_with_preview`` is laid out as cameras and Adobe's converter do, written by tifffile: IFD0 a
reduced-resolution RGB preview, its SubIFD the full-resolution Bayer data. Both say how the
camera was held (``Orientation``), and LibRaw reads both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

WHITE = 4095  # 12-bit sensor data
_COLOR_MATRIX = (1.9549, -0.7877, -0.2582, -0.5724, 1.0121, 0.1917, -0.1267, -0.0110, 0.6621)


def bayer(rgb: Image.Image) -> np.ndarray:
    """An RGGB mosaic of ``rgb`` (even width and height), as 12-bit sensor values."""
    pixels = np.asarray(rgb.convert("RGB"), dtype=np.float64) / 255.0
    height, width = pixels.shape[:2]
    mosaic = np.empty((height, width), dtype=np.float64)
    mosaic[0::2, 0::2] = pixels[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = pixels[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = pixels[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = pixels[1::2, 1::2, 2]
    return np.round(mosaic**2.2 * WHITE).astype(np.uint16)  # linear light, as a sensor sees it


def plain_dng(path: Path, scene: Image.Image, *, orientation: int = 1) -> Path:
    """A DNG of ``scene``'s sensor data with no embedded preview, written by PiDNG."""
    from pidng.core import RAW2DNG, DNGTags, Tag
    from pidng.defs import CalibrationIlluminant, CFAPattern, DNGVersion, PhotometricInterpretation

    data = bayer(scene)
    height, width = data.shape
    tags = DNGTags()
    for tag, value in (
        (Tag.ImageWidth, width), (Tag.ImageLength, height), (Tag.TileWidth, width), (Tag.TileLength, height),
        (Tag.Orientation, orientation), (Tag.PhotometricInterpretation, PhotometricInterpretation.Color_Filter_Array),
        (Tag.SamplesPerPixel, 1), (Tag.BitsPerSample, 12), (Tag.CFARepeatPatternDim, [2, 2]),
        (Tag.CFAPattern, CFAPattern.RGGB), (Tag.BlackLevel, 0), (Tag.WhiteLevel, WHITE),
        (Tag.ColorMatrix1, [[round(v * 10000), 10000] for v in _COLOR_MATRIX]),
        (Tag.CalibrationIlluminant1, CalibrationIlluminant.D65), (Tag.AsShotNeutral, [[1, 1], [1, 1], [1, 1]]),
        (Tag.DNGVersion, DNGVersion.V1_4), (Tag.Make, "ramtag"), (Tag.Model, "synthetic sensor"),
    ):
        tags.set(tag, value)
    writer = RAW2DNG()
    writer.options(tags, path="", compress=False)
    path.write_bytes(bytes(writer.convert(data)))
    return path


def dng_with_preview(
    path: Path, scene: Image.Image, preview: Image.Image, *, orientation: int = 1, jpeg: bool = False
) -> Path:
    """A DNG of ``scene``'s sensor data whose IFD0 is ``preview``, written by tifffile: RGB pixels,
    or (``jpeg``) one JPEG-compressed strip, as most cameras store it (imagecodecs encodes it)."""
    import tifffile

    data = bayer(scene)
    rationals = [part for value in _COLOR_MATRIX for part in (round(value * 10000), 10000)]
    camera = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 2, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "ramtag synthetic sensor", True),  # UniqueCameraModel
        (50721, "2i", 9, rationals, True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (274, "H", 1, orientation, True),
        (271, "s", 0, "ramtag", True),
        (272, "s", 0, "synthetic sensor", True),
    ]
    sensor = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50714, "H", 1, 0, True),  # BlackLevel
        (50717, "H", 1, WHITE, True),  # WhiteLevel
    ]
    with tifffile.TiffWriter(path) as tif:
        compressed = {"compression": "jpeg", "rowsperstrip": preview.height} if jpeg else {}
        tif.write(np.asarray(preview.convert("RGB")), photometric="rgb", subfiletype=1, subifds=1,
                  extratags=camera, metadata=None, **compressed)
        tif.write(data, photometric=32803, subfiletype=0, extratags=sensor, metadata=None)  # CFA
    return path


def striped(width: int, height: int) -> Image.Image:
    """A grey picture with a white band along its top edge: shows which way is up."""
    image = Image.new("RGB", (width, height), (90, 110, 130))
    image.paste((255, 255, 255), (0, 0, width, max(2, height // 8)))
    return image


def band_side(image: Image.Image) -> str:
    """Which edge of ``image`` the white band of ``striped`` is on."""
    grey = np.asarray(image.convert("L"), dtype=np.float64)
    edges = {
        "top": grey[: grey.shape[0] // 10].mean(), "bottom": grey[-grey.shape[0] // 10 :].mean(),
        "left": grey[:, : grey.shape[1] // 10].mean(), "right": grey[:, -grey.shape[1] // 10 :].mean(),
    }
    return max(edges, key=edges.get)
