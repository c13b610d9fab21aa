"""Finding ramtag's XMP record without ExifTool (``outputs.xmpscan``): in the metadata, without
reading the image data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from ramtag.outputs import xmpscan

NEEDLE = b"https://ramtag.invalid/ns/xmp/1.0/"
PACKET = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
          f'<rdf:Description xmlns:ramtag="{NEEDLE.decode()}" ramtag:Date="2026"/></rdf:RDF></x:xmpmeta>')


class Counting(io.FileIO):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


def _noise(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("kind", ["jpg", "png", "webp"])
def test_the_record_is_found_in_the_metadata_without_reading_the_image(tmp_path: Path, kind: str) -> None:
    image = _noise(2000, 1500)  # megabytes of image data the scan must not read
    marked, plain = tmp_path / f"marked.{kind}", tmp_path / f"plain.{kind}"
    if kind == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", PACKET)
        image.save(marked, pnginfo=info, compress_level=1)
    else:
        image.save(marked, xmp=PACKET.encode(), quality=95)
    image.save(plain, **({"compress_level": 1} if kind == "png" else {"quality": 95}))
    with open(plain, "ab") as handle:  # the needle after the image data, where XMP is not kept
        handle.write(NEEDLE)
    assert xmpscan.holds_record(marked, NEEDLE) and not xmpscan.holds_record(plain, NEEDLE)
    for path in (marked, plain):
        with Counting(path) as handle:
            list(xmpscan.regions(handle, path.suffix))
        assert path.stat().st_size > 1_000_000 and handle.read_bytes < 20_000, (path, handle.read_bytes)


def test_other_formats_and_files_that_do_not_parse_are_read_at_both_ends(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(xmpscan, "EDGE", 1000)
    path = tmp_path / "x.tif"
    middle = b"\0" * 5000
    for head, tail, found in ((NEEDLE, b"", True), (b"", NEEDLE, True), (b"", b"", False)):
        path.write_bytes(head + middle + NEEDLE[:5] + middle + tail)
        assert xmpscan.holds_record(path, NEEDLE) is found
    path.write_bytes(middle + NEEDLE + middle)  # the middle of a TIFF is image data: not read
    assert not xmpscan.holds_record(path, NEEDLE)
    fake = tmp_path / "fake.jpg"  # named a JPEG, but is not one: read like the others
    fake.write_bytes(b"GIF89a" + NEEDLE)
    assert xmpscan.holds_record(fake, NEEDLE)
