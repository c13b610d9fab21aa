"""Preprocessing: Pillow's (the official route, in the workers) and JPEGs decoded on the device.

The device route is exercised on the CPU here (libjpeg-turbo stands in for nvJPEG); the GPU itself
is measured by ``PARTS=preprocess bash benchmarks/gpu_bench.sh``.
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from ramtag.devicejpeg import decode_jpegs, upright
from ramtag.engine.job import Job, InputOptions, ModelOptions, ResultOptions
from ramtag.errors import UsageError
from ramtag.inputs import ImageDecodeError, decode_image, discover
from ramtag.inputs.jpeg import encoded_jpeg
from ramtag.model.config import named_config
from ramtag.model.transform import normalise, preprocess, resize_pixels
from ramtag.outputs import METADATA_KEY
from ramtag.pipeline import run_batches

from test_cli_run import ramtag  # tests/ is on sys.path (pytest rootdir import)
from test_pipeline import bad_folder

CONFIG = named_config("ram_plus_swin_large_14m")
ONE_LEVEL = 1 / 255 / min(CONFIG.std)  # one level of 255, in the model's normalised units
ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth colour with some noise, like a photo: a resize has something to average."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    noise = rng.integers(-12, 13, (size[1], size[0], 3))
    return Image.fromarray(np.clip(np.asarray(coarse).astype(int) + noise, 0, 255).astype(np.uint8))


def _jpeg_bytes(image: Image.Image, orientation: int | None = None, **options) -> bytes:
    out = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(out, "JPEG", exif=exif.tobytes(), quality=92, **options)
    return out.getvalue()


def _official(image: Image.Image) -> torch.Tensor:
    """The official transform's arithmetic, written out: what ``preprocess`` must reproduce."""
    size = CONFIG.image_size
    array = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    array = (array / np.float32(255.0) - np.asarray(CONFIG.mean, np.float32)) / np.asarray(CONFIG.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA", "CMYK"])
def test_pillow_route_is_the_official_arithmetic(mode: str) -> None:
    image = _photo((500, 300)).convert(mode)
    # The table holds the official float32 arithmetic applied to each level, and IEEE division and
    # subtraction are correctly rounded on every CPU: the same bits, not merely close ones.
    assert torch.equal(preprocess(image, CONFIG), _official(image))


def test_the_pillow_route_decodes_as_before(tmp_path: Path) -> None:
    """Upright JPEGs are no longer copied after decoding: what ``decode_image`` gives is still what
    Pillow's ``exif_transpose`` of the decoded file gives (the route before), in pixels, size,
    recorded original size and metadata, for every orientation, draft decoding, CMYK, MPO and XMP."""
    from ramtag.inputs.decode import ORIGINAL_SIZE
    from PIL import ImageOps

    photo = _photo((900, 500))
    cases = {f"o{orientation}.jpg": _jpeg_bytes(photo, orientation=orientation) for orientation in range(1, 9)}
    cases["xmp.jpg"] = _jpeg_bytes(photo, xmp=XMP_TURNED)
    cases["cmyk.jpg"] = _jpeg_bytes(photo.convert("CMYK"), orientation=6)
    cases["grey.jpg"] = _jpeg_bytes(photo.convert("L"), orientation=3, progressive=True)
    mpo = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(mpo, "MPO", save_all=True, append_images=[_photo((900, 500), seed=1)], exif=exif.tobytes())
    cases["pair.mpo"] = mpo.getvalue()
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        for draft in (None, 200):
            with Image.open(path) as before:
                if draft is not None and before.format == "JPEG":
                    before.draft(before.mode, (draft, draft))
                before.load()
                before = ImageOps.exif_transpose(before)
            now = decode_image(path, draft_size=draft)
            assert (now.mode, now.size) == (before.mode, before.size), name
            assert now.tobytes() == before.tobytes(), name
            assert now.info.get("exif") == before.info.get("exif"), name
            assert now.info.get("xmp") == before.info.get("xmp"), name
            upright = (500, 900) if name in ("o5.jpg", "o6.jpg", "o7.jpg", "o8.jpg", "xmp.jpg", "cmyk.jpg", "pair.mpo") else (900, 500)
            assert now.info.get(ORIGINAL_SIZE, now.size) == upright, name


def test_normalise_takes_a_batch_as_well_as_one_image() -> None:
    levels = torch.randint(0, 256, (3, 3, 20, 24), dtype=torch.uint8)
    batch = normalise(levels, CONFIG)
    assert batch.shape == (3, 3, 20, 24) and batch.dtype == torch.float32 and batch.is_contiguous()
    for index in range(3):
        torch.testing.assert_close(normalise(levels[index], CONFIG), batch[index], atol=0, rtol=0)
    mean, std = torch.tensor(CONFIG.mean).view(3, 1, 1), torch.tensor(CONFIG.std).view(3, 1, 1)
    torch.testing.assert_close(batch[1], (levels[1].float() / 255 - mean) / std, atol=1e-6, rtol=0)
    listed = replace(CONFIG, mean=list(CONFIG.mean), std=list(CONFIG.std))  # a config built by hand
    assert torch.equal(normalise(levels, listed), batch)


@pytest.mark.parametrize("size", [(1, 1), (7, 5), (384, 384), (383, 390), (640, 428), (1600, 1200), (60, 2000)])
def test_torch_resize_is_pillows_filter_within_one_level(size: tuple[int, int]) -> None:
    image = _photo(size, seed=size[0])
    want = np.asarray(image.resize((384, 384), Image.Resampling.BILINEAR)).astype(int)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    got = resize_pixels(pixels, 384)
    assert got.dtype == torch.uint8 and got.shape == (3, 384, 384)
    difference = np.abs(got.permute(1, 2, 0).numpy().astype(int) - want)
    assert difference.max() <= 1  # integer arithmetic rounded differently, never another filter
    assert (difference > 0).mean() < 0.25
    batch = resize_pixels(torch.stack([pixels, pixels.flip(-1)]), 384)
    assert torch.equal(batch[0], got)


def test_the_gpus_float_resize_is_pillows_filter_within_one_level() -> None:
    from ramtag.model.transform import _resize_float

    image = _photo((1000, 700))
    want = np.asarray(image.resize((384, 384), Image.Resampling.BILINEAR)).astype(int)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    got = _resize_float(pixels[None], 384)[0]  # the branch a CUDA device takes, run on the CPU
    assert got.dtype == torch.uint8
    assert np.abs(got.permute(1, 2, 0).numpy().astype(int) - want).max() <= 1


def test_upright_turns_pixels_as_pillow_does() -> None:
    image = _photo((7, 5))
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    assert torch.equal(upright(pixels, 1), pixels)
    for orientation, method in ORIENTATIONS.items():
        want = torch.from_numpy(np.asarray(image.transpose(method)).copy()).permute(2, 0, 1)
        assert torch.equal(upright(pixels, orientation), want), orientation


def test_which_files_travel_encoded() -> None:
    photo = _photo((64, 48))
    plain = encoded_jpeg(_jpeg_bytes(photo), "a.jpg", max_pixels=None)
    assert plain is not None and (plain.orientation, plain.width, plain.height) == (1, 64, 48)
    turned = encoded_jpeg(_jpeg_bytes(photo, orientation=6), "b.jpg", max_pixels=None)
    assert (turned.orientation, turned.width, turned.height) == (6, 48, 64)  # upright size
    grey = encoded_jpeg(_jpeg_bytes(photo.convert("L"), progressive=True), "c.jpg", max_pixels=None)
    assert grey is not None and grey.name == "c.jpg"
    assert encoded_jpeg(_jpeg_bytes(photo.convert("CMYK")), "d.jpg", max_pixels=None) is None  # Pillow's job
    png = io.BytesIO()
    photo.save(png, "PNG")
    assert encoded_jpeg(png.getvalue(), "e.jpg", max_pixels=None) is None  # named .jpg, a PNG inside
    assert encoded_jpeg(b"\xff\xd8\xff\xe0 not a real header", "f.jpg", max_pixels=None) is None
    with pytest.raises(ImageDecodeError, match="too large"):
        encoded_jpeg(_jpeg_bytes(photo), "g.jpg", max_pixels=1000)


XMP_TURNED = (  # the orientation only in XMP, where Pillow looks when EXIF has none
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
)


def _with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """``jpeg`` with one more segment right after its start-of-image marker."""
    return jpeg[:2] + bytes([0xFF, marker]) + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


# EXIF a simple reader misses: big-endian, the orientation stored as a LONG (Pillow reads 6)
BIG_ENDIAN_EXIF = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x04\x00\x00\x00\x01\x00\x00\x00\x06\x00\x00\x00\x00"


def _turned_files(folder: Path) -> tuple[list, torch.Tensor]:
    """JPEGs turned every way EXIF says, one turned by XMP alone, one with big-endian EXIF and one
    with its XMP before its EXIF, with what Pillow's route in the workers makes of them."""
    datas = []
    for number, orientation in enumerate([1, 2, 3, 5, 6, 7, 8]):
        datas.append(_jpeg_bytes(_photo((120 + 20 * number, 90), seed=number), orientation=orientation))
    datas.append(_jpeg_bytes(_photo((100, 90), seed=7), xmp=XMP_TURNED))
    plain = _jpeg_bytes(_photo((110, 70), seed=8))
    datas.append(_with_segment(plain, 0xE1, BIG_ENDIAN_EXIF))
    xmp_first = _with_segment(_jpeg_bytes(_photo((90, 60), seed=9), orientation=8), 0xE1,
                              b"http://ns.adobe.com/xap/1.0/\x00" + XMP_TURNED.replace(b'"6"', b'"1"'))
    datas.append(xmp_first)
    files, want = [], []
    for number, data in enumerate(datas):
        path = folder / f"{number}.jpg"
        path.write_bytes(data)
        files.append(encoded_jpeg(data, path.name, max_pixels=None))
        want.append(preprocess(decode_image(path), CONFIG))
    assert [file.orientation for file in files] == [1, 2, 3, 5, 6, 7, 8, 6, 6, 8]
    for file in files:  # what the decoders get: no EXIF (renamed APP15), so nothing of theirs to apply
        assert "exif" not in Image.open(io.BytesIO(file.data)).info
    return files, torch.stack(want)


def test_device_decoding_matches_the_worker_route(tmp_path: Path) -> None:
    """Decoded, turned upright, resized and normalised on the device: what Pillow's route in the
    workers gives for the same file (on the CPU both decode with libjpeg-turbo)."""
    files, want = _turned_files(tmp_path)
    pixels, failed = decode_jpegs(files, torch.device("cpu"), CONFIG)
    assert failed == [] and pixels.shape == (len(files), 3, 384, 384)
    # Torch's resize is within a level of Pillow's; the two libjpeg-turbo builds may differ by one.
    torch.testing.assert_close(pixels, want, atol=2 * ONE_LEVEL + 1e-6, rtol=0)


def _bogus_huffman(jpeg: bytes) -> bytes:
    """A JPEG whose header Pillow opens but whose Huffman table no decoder accepts."""
    data = bytearray(jpeg)
    table = data.find(b"\xff\xc4")
    data[table + 5 : table + 21] = b"\xff" * 16  # more codes of each length than can exist
    return bytes(data)


def test_device_decoding_reports_the_files_it_could_not_decode() -> None:
    good = encoded_jpeg(_jpeg_bytes(_photo((50, 40))), "good.jpg", max_pixels=None)
    bogus = encoded_jpeg(_bogus_huffman(_jpeg_bytes(_photo((50, 40), seed=3))), "bogus.jpg", max_pixels=None)
    assert bogus is not None  # its header is fine: only decoding finds the fault
    pixels, failed = decode_jpegs([bogus, good, bogus], torch.device("cpu"), CONFIG)
    assert failed == [0, 2] and pixels.shape == (1, 3, 384, 384)
    assert decode_jpegs([bogus], torch.device("cpu"), CONFIG) == (None, [0])


def test_large_photos_are_decoded_a_group_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from ramtag import devicejpeg

    files = [encoded_jpeg(_jpeg_bytes(_photo((80, 60), seed=seed)), f"{seed}.jpg", max_pixels=None) for seed in range(5)]
    calls = []
    decode = devicejpeg.jpeg_decoder()
    monkeypatch.setattr(devicejpeg, "jpeg_decoder", lambda: lambda datas, device: calls.append(len(datas)) or decode(datas, device))
    monkeypatch.setattr(devicejpeg, "PIXEL_BUDGET", 2 * 80 * 60)
    pixels, failed = decode_jpegs(files, torch.device("cpu"), CONFIG)
    assert calls == [2, 2, 1] and failed == [] and pixels.shape[0] == 5
    monkeypatch.setattr(devicejpeg, "PIXEL_BUDGET", 10)  # a file larger than the budget goes alone
    assert decode_jpegs(files[:2], torch.device("cpu"), CONFIG)[0].shape[0] == 2 and calls[-2:] == [1, 1]


@pytest.mark.parametrize("workers", [0, 2])
def test_gpu_route_keeps_order_errors_and_scores(tmp_path: Path, tiny_tagger, workers: int) -> None:
    """The whole pipeline with JPEGs decoded in the main process on the model's device: every file
    of a mixed folder in order, Pillow's words for the bad ones, nearly Pillow's route's scores."""
    expected = bad_folder(tmp_path)  # a good JPEG, an empty, a truncated JPEG, a text, a huge PNG
    (tmp_path / "f_turned.jpg").write_bytes(_jpeg_bytes(_photo((90, 60)), orientation=6))
    (tmp_path / "e_bogus.jpg").write_bytes(_bogus_huffman(_jpeg_bytes(_photo((50, 40)))))  # fails on the device
    expected["e_bogus.jpg"] = "corrupt"  # then Pillow says why
    _photo((70, 50)).convert("CMYK").save(tmp_path / "g_cmyk.jpg")
    _photo((40, 40)).save(tmp_path / "h_photo.png")

    def records(route: str) -> dict:
        batches = run_batches(discover([tmp_path]), tiny_tagger, batch_size=3, workers=workers,
                              max_pixels=10_000, preprocessing=route)
        return {record.key: record for batch in batches for record in batch}

    on_device, in_workers = records("gpu"), records("pillow")
    assert list(on_device) == sorted(path.name for path in tmp_path.iterdir())
    for name, record in on_device.items():
        if name in expected:
            assert record.result is None and expected[name] in record.error, name
            continue
        assert record.error is None, record.error
        other = in_workers[name]
        assert (record.width, record.height) == (other.width, other.height)
        # pixels within a level or two; a wrong turn or channel order moves scores by ~0.1
        np.testing.assert_allclose(record.result.all_scores, other.result.all_scores, atol=5e-3)
    assert (on_device["f_turned.jpg"].width, on_device["f_turned.jpg"].height) == (60, 90)


def test_the_gpu_route_needs_few_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    from ramtag import pipeline

    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda _pid: set(range(96)), raising=False)
    assert pipeline.default_workers(torch.device("cuda")) == pipeline.MAX_GPU_WORKERS
    assert pipeline.default_workers(torch.device("cuda"), "gpu") == pipeline.GPU_DECODING_WORKERS < 32


def test_preprocess_choices_are_checked_before_the_model() -> None:
    def job(**results) -> Job:
        return Job(inputs=InputOptions(paths=("x",)), model=ModelOptions(device=results.pop("device", "auto")),
                   results=ResultOptions(**results))

    job(preprocess="gpu", device="cuda:1").check()
    job(preprocess="gpu", device="CUDA").check()  # device names are read as everywhere else
    job(preprocess="pillow", device="cpu", draft_decode=True).check()
    for bad, words in [
        (dict(preprocess="nvjpeg"), "must be one of pillow, gpu"),
        (dict(preprocess="gpu", device="cpu"), "CUDA GPU, and the model runs on the CPU"),
        (dict(preprocess="gpu", device="mps"), "runs on mps"),
        (dict(preprocess="gpu", draft_decode=True), "--draft-decode"),
    ]:
        with pytest.raises(UsageError, match=words):
            job(**bad).check()


def test_run_records_the_route_and_refuses_a_mix(tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ramtag run --preprocess gpu`` end to end, on the CPU (the CUDA check is lifted for it): the
    outputs record the route, and adding to them with Pillow's route is refused, the file untouched."""
    from ramtag.engine import job

    monkeypatch.setattr(job, "check_preprocess_device", lambda _route, _device: None)
    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(2):
        (photos / f"{number}.jpg").write_bytes(_jpeg_bytes(_photo((800, 600), seed=number), orientation=6))
    args = [photos, "--workers", "0", "--all-scores", *ramplus_tiny.cli_args()]
    exact_out, device_out = tmp_path / "exact.parquet", tmp_path / "device.parquet"
    assert ramtag(*args, "--out", exact_out).exit_code == 0
    result = ramtag(*args, "--out", device_out, "--preprocess", "gpu")
    assert result.exit_code == 0, result.output
    exact, on_device = pq.read_table(exact_out).to_pandas(), pq.read_table(device_out).to_pandas()
    assert on_device[["path", "width", "height"]].equals(exact[["path", "width", "height"]])
    assert on_device["width"].tolist() == [600, 600]  # upright
    change = np.abs(np.stack(on_device["all_scores"]) - np.stack(exact["all_scores"]))
    assert change.max() < 5e-3  # pixels within a level or two: nearly the same scores
    recorded = json.loads(pq.read_schema(device_out).metadata[METADATA_KEY.encode()])
    assert recorded["preprocess"] == "gpu"
    assert "preprocess" not in json.loads(pq.read_schema(exact_out).metadata[METADATA_KEY.encode()])
    before = device_out.read_bytes()
    result = ramtag(*args, "--out", device_out)  # the same output with Pillow's route: refused
    assert result.exit_code == 1 and "preprocess" in result.stderr
    assert device_out.read_bytes() == before


def test_gpu_route_without_a_gpu_is_one_line_before_the_model(tmp_path: Path, ramplus_tiny) -> None:
    (tmp_path / "a.jpg").write_bytes(_jpeg_bytes(_photo((40, 30))))
    result = ramtag(tmp_path, "--preprocess", "gpu", "--device", "cpu", *ramplus_tiny.cli_args())
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --preprocess gpu decodes JPEGs with nvJPEG on a CUDA GPU, and the model runs on the CPU: "
        "leave --preprocess out there"
    ]


def test_torchvision_decodes_where_torchcodec_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """TorchCodec is optional (``ramtag[gpu]``); torchvision's decoder, which it replaces, stands in,
    and then ramtag turns every image upright itself."""
    from ramtag import devicejpeg

    files, want = _turned_files(tmp_path)
    devicejpeg.jpeg_decoder.cache_clear()
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)  # import fails as if not installed
    try:
        assert "torchcodec" not in devicejpeg.jpeg_decoder().__qualname__
        pixels, failed = decode_jpegs(files, torch.device("cpu"), CONFIG)
    finally:
        devicejpeg.jpeg_decoder.cache_clear()
    assert failed == []
    torch.testing.assert_close(pixels, want, atol=2 * ONE_LEVEL + 1e-6, rtol=0)


def test_a_batch_carries_its_jpegs_as_one_tensor(tiny_tagger) -> None:
    """Still-encoded files cross from the workers in one shared-memory tensor, not one pickle each."""
    from ramtag.pipeline import Prepared, collate

    datas = [_jpeg_bytes(_photo((30 + number, 20), seed=number)) for number in range(3)]
    files = [encoded_jpeg(data, f"{number}.jpg", max_pixels=None) for number, data in enumerate(datas)]
    pixels = preprocess(_photo((10, 10)), tiny_tagger.config)
    items = [Prepared("0", None, 30, 20, None, jpeg=files[0]), Prepared("p", pixels, 10, 10, None),
             Prepared("bad", None, None, None, "corrupt"), Prepared("1", None, 31, 20, None, jpeg=files[1]),
             Prepared("2", None, 32, 20, None, jpeg=files[2])]
    batch = collate(items)
    handed = [file.data for file in files]  # each file's bytes, its EXIF segment renamed
    assert batch.encoded.dtype == torch.uint8 and batch.encoded.numel() == sum(map(len, handed))
    assert [batch.encoded[start:end].numpy().tobytes() for start, end in batch.spans] == handed
    assert all(item.jpeg is None or item.jpeg.data == b"" for item in batch.items)
    assert batch.pixels.shape[0] == 1 and collate(items[1:3]).encoded is None


def _exif_orientation(orientation: int, header: bytes = b"Exif\x00\x00") -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return header + exif.tobytes()[6:]  # tobytes() starts with Pillow's own Exif header


@pytest.mark.parametrize("variant", ["junk between segments", "APP0 of length 0", "APP0 of length 1",
                                     "Exif header Pillow ignores", "two EXIF segments"])
def test_no_decoder_turns_an_image_by_its_own_reading(variant: str, tmp_path: Path) -> None:
    """Headers libjpeg and Pillow get through while a simple segment walk would not: the bytes
    handed to the decoder have no APP1 left, so what it returns is the stored image, unturned,
    and only Pillow's orientation is applied."""
    from ramtag.devicejpeg import jpeg_decoder

    photo = _photo((96, 64))
    plain = _jpeg_bytes(photo)
    exif = b"\xff\xe1" + (len(_exif_orientation(6)) + 2).to_bytes(2, "big") + _exif_orientation(6)
    data = {
        "junk between segments": plain[:2] + b"\x00\x00" + exif + plain[2:],
        "APP0 of length 0": plain[:2] + b"\xff\xe0\x00\x00" + exif + plain[2:],
        "APP0 of length 1": plain[:2] + b"\xff\xe0\x00\x01" + exif + plain[2:],
        "Exif header Pillow ignores": _with_segment(plain, 0xE1, _exif_orientation(6, b"Exif\x00\xff")),
        "two EXIF segments": _with_segment(_with_segment(plain, 0xE1, _exif_orientation(6)), 0xE1, _exif_orientation(3)),
    }[variant]
    path = tmp_path / "odd.jpg"
    path.write_bytes(data)
    file = encoded_jpeg(data, path.name, max_pixels=None)
    if file is None:
        return  # Pillow's route then, which turns it as Pillow reads it
    stored = jpeg_decoder()([file.data], torch.device("cpu"))[0]
    assert stored.shape == (3, 64, 96)  # as stored: the decoder saw no orientation of its own
    pixels, failed = decode_jpegs([file], torch.device("cpu"), CONFIG)
    want = preprocess(decode_image(path), CONFIG)
    assert failed == [] and torch.allclose(pixels[0], want, atol=2 * ONE_LEVEL + 1e-6, rtol=0)


def test_a_jpeg_cut_off_in_its_image_data_stays_with_pillow() -> None:
    """An end-of-image marker inside a header segment (an EXIF thumbnail, say) is not the file's end."""
    plain = _jpeg_bytes(_photo((64, 48)))
    with_thumbnail = _with_segment(plain, 0xE2, b"thumbnail" + _jpeg_bytes(_photo((16, 12))))  # ends in FF D9
    scan = with_thumbnail.find(b"\xff\xda")
    assert encoded_jpeg(with_thumbnail, "whole.jpg", max_pixels=None) is not None
    assert encoded_jpeg(with_thumbnail[: scan + 60], "cut.jpg", max_pixels=None) is None


def test_what_the_gpu_cannot_decode_pillow_does_upright(tmp_path: Path, tiny_tagger, monkeypatch: pytest.MonkeyPatch) -> None:
    """A JPEG nvJPEG refuses (arithmetic coding, say) is decoded by Pillow on the host from the
    file's own bytes: turned as Pillow turns it, with the route's scores."""
    from ramtag import devicejpeg

    for number, orientation in enumerate([1, 6, 8]):
        (tmp_path / f"{number}.jpg").write_bytes(_jpeg_bytes(_photo((90, 60), seed=number), orientation=orientation))
    (tmp_path / "3.jpg").write_bytes(_jpeg_bytes(_photo((90, 60), seed=3), xmp=XMP_TURNED))

    def refuses(datas, device):
        raise RuntimeError("nvJPEG: unsupported JPEG")

    monkeypatch.setattr(devicejpeg, "jpeg_decoder", lambda: refuses)
    on_host = {record.key: record for batch in run_batches(discover([tmp_path]), tiny_tagger, batch_size=4, workers=0,
                                                            preprocessing="gpu") for record in batch}
    by_pillow = {record.key: record for batch in run_batches(discover([tmp_path]), tiny_tagger, batch_size=4, workers=0)
                 for record in batch}
    assert list(on_host) == list(by_pillow)
    for key, record in on_host.items():
        assert record.error is None and (record.width, record.height) == (by_pillow[key].width, by_pillow[key].height)
        np.testing.assert_allclose(record.result.all_scores, by_pillow[key].result.all_scores, atol=1e-5)


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path: Path, ramplus_tiny, suffix: str) -> None:
    # A 16-bit scan of a picture must be tagged as that picture: Pillow's own RGB conversion clips
    # its levels at 255 (nearly white); scaled to 8 bits it is the 8-bit greyscale picture exactly.
    config = CONFIG
    grey = Image.open(ramplus_tiny.images / "demo4.jpg").convert("L")
    deep = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
    deep.save(tmp_path / f"scan.{suffix}")
    opened = decode_image(tmp_path / f"scan.{suffix}")
    assert opened.mode.startswith("I;16")
    want = preprocess(grey, config)
    assert torch.equal(preprocess(opened, config), want)
    assert torch.equal(preprocess(opened.convert("I"), config), want)  # how some 16-bit files open
    assert torch.equal(preprocess(grey.convert("I"), config), want)  # 8-bit levels in a 32-bit image
