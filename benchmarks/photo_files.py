"""Photographers' files: how long a camera raw takes to decode, and a keyword edit to embed.

    python benchmarks/photo_files.py [--megapixels 24] [--repeats 5] [--photos 20]

Raw decoding, per raw, on DNGs of a ``--megapixels`` sensor written by tifffile (as in the tests):
- ``preview``: the embedded preview (1/4 of the sensor's sides, as many cameras store), what
  ``--raw-decode auto`` uses when it covers the model's input;
- ``demosaic``: LibRaw developing the sensor data at half size (``--raw-decode demosaic``, or a raw
  without a usable preview).

Embedding keywords, per JPEG of the same size (``--photos`` of them):
- ``exiftool``: ramtag's ``EmbedWriter.update`` (read, copy, exiftool edit, pixel check, rename);
- ``exiftool edit only``: the exiftool command alone, on the copy;
- ``exiv2``: the same three XMP fields written in place by python-exiv2 (``pip install exiv2``),
  when installed: the other engine the issue named, for comparison. exiv2 0.28 cannot write
  XMP into HEIC/AVIF (its BMFF support is read-only), which decided for ExifTool.
Medians of the repeats; all numbers from the same run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def scene(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(0)
    base = np.linspace(0, 255, width, dtype=np.float64)[None, :, None] * np.ones((height, 1, 3))
    noise = rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def timed(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raws(folder: Path, megapixels: float, repeats: int) -> None:
    from rawfiles import dng_with_preview

    from ramtag.inputs import decode_image
    from ramtag.inputs.raw import RawOptions

    height = int((megapixels * 1e6 / 1.5) ** 0.5) // 2 * 2
    width = int(height * 1.5) // 2 * 2
    picture = scene(width, height)
    path = dng_with_preview(folder / "raw.dng", picture, picture.resize((width // 4, height // 4)))
    print(f"raw: {width}x{height} sensor ({width * height / 1e6:.1f} MP), preview {width // 4}x{height // 4}, "
          f"{path.stat().st_size >> 20} MiB")
    preview = timed(lambda: decode_image(path, raw=RawOptions("auto")), repeats)
    demosaic = timed(lambda: decode_image(path, raw=RawOptions("demosaic")), repeats)
    print(f"  preview  {preview * 1000:8.1f} ms per raw")
    print(f"  demosaic {demosaic * 1000:8.1f} ms per raw ({demosaic / preview:.1f}x the preview)")


def embedding(folder: Path, megapixels: float, photos: int) -> None:
    from ramtag.exiftool import ExifTool
    from ramtag.outputs.embedded import EmbedWriter
    from ramtag.outputs.rewriting import temporary_path
    from ramtag.outputs.sidecars import Provenance

    height = int((megapixels * 1e6 / 1.5) ** 0.5)
    picture = scene(int(height * 1.5), height)
    first = folder / "p0.jpg"
    picture.save(first, quality=90)
    paths = [first] + [shutil.copyfile(first, folder / f"p{n}.jpg") for n in range(1, photos)]
    paths = [Path(p) for p in paths]
    result = SimpleNamespace(tags=["dog", "grass", "sky", "tree"], scores=[0.9, 0.8, 0.7, 0.6], tags_zh=None)
    print(f"embedding: {photos} JPEGs of {picture.width}x{picture.height}, {first.stat().st_size >> 10} KiB each")
    with ExifTool() as tool:
        writer = EmbedWriter(Provenance("ram_plus", "", "0.68", "bench"), tool=tool)
        full = []
        for path in paths:
            start = time.perf_counter()
            writer.update(path, result)
            full.append(time.perf_counter() - start)
        edit = []
        for path in paths:
            copy = temporary_path(path)
            shutil.copyfile(path, copy)
            start = time.perf_counter()
            tool.run("-overwrite_original", "-XMP-dc:Subject=dog", "-XMP-dc:Subject=cat", copy)
            edit.append(time.perf_counter() - start)
            copy.unlink()
    print(f"  exiftool (ramtag's whole safe write) {statistics.median(full) * 1000:7.1f} ms per photo")
    print(f"  exiftool edit only                   {statistics.median(edit) * 1000:7.1f} ms per photo")
    try:
        import exiv2
    except ImportError:
        print("  exiv2: not installed (pip install exiv2) - skipped")
        return
    times = []
    for path in paths:
        start = time.perf_counter()
        image = exiv2.ImageFactory.open(str(path))
        image.readMetadata()
        xmp = image.xmpData()
        xmp["Xmp.dc.subject"] = "dog, grass, sky, tree"
        xmp["Xmp.lr.hierarchicalSubject"] = "ramtag|dog"
        xmp["Xmp.digiKam.TagsList"] = "ramtag/dog"
        image.writeMetadata()
        times.append(time.perf_counter() - start)
    print(f"  exiv2 edit in place                  {statistics.median(times) * 1000:7.1f} ms per photo")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megapixels", type=float, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--photos", type=int, default=20)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        raws(Path(folder), options.megapixels, options.repeats)
        embedding(Path(folder), options.megapixels, options.photos)


if __name__ == "__main__":
    main()
