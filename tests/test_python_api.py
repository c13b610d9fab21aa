"""The Python API as a library user meets it: the same photo as a path or a PIL image, arguments of
the types torch users pass, and mistakes refused in words rather than done silently."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import OfficialFixture
from ramtag import load_tagger
from ramtag.engine.job import InputOptions, Job, ModelOptions, OutputOptions
from ramtag.engine.local import run_job
from ramtag.errors import UsageError


def test_a_photo_turned_by_its_exif_is_the_same_as_a_path_or_a_pil_image(tmp_path: Path, tiny_tagger, ramplus_tiny) -> None:
    photo = Image.open(ramplus_tiny.images / "demo4.jpg").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown turned a quarter
    path = tmp_path / "turned.jpg"
    photo.save(path, exif=exif, quality=95)
    from_path = tiny_tagger.tag(path)
    with Image.open(path) as opened:
        from_pil = tiny_tagger.tag(opened)
    assert (from_pil.width, from_pil.height) == (from_path.width, from_path.height) == (photo.height, photo.width)
    np.testing.assert_allclose(from_pil.all_scores, from_path.all_scores, atol=1e-5)


def test_an_empty_pil_image_is_an_error_result(tiny_tagger) -> None:
    results = tiny_tagger.tag([Image.new("RGB", (0, 0)), Image.new("RGB", (40, 30))])
    assert results[0].error == "an empty image (0x0 pixels)" and results[0].tags == []
    assert results[1].error is None


@pytest.mark.parametrize("options", [{"top_k": 0}, {"top_k": -1}, {"top_k": True}, {"batch_size": 0}])
def test_tag_options_out_of_range_are_refused(tiny_tagger, options: dict) -> None:
    with pytest.raises(UsageError, match="at least 1"):
        tiny_tagger.tag(Image.new("RGB", (40, 30)), **options)


def test_torch_devices_and_dtypes_are_taken_as_their_names(ramplus_tiny: OfficialFixture) -> None:
    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device=torch.device("cpu"), precision=torch.float32)
    assert tagger.device.type == "cpu" and tagger.precision.name == "fp32"
    assert repr(tagger) == "Tagger(ram_plus, 16 tags, fp32 on cpu)"
    assert load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu:0", precision=torch.bfloat16).precision.name == "bf16"


@pytest.mark.parametrize(("options", "said"), [
    ({"vocab": "bogus"}, r"vocab \(--vocab\) must be one of open, both"),
    ({"vocab": "both"}, "go with open-set tags"),
    ({"text_encoder": "openai/clip-vit-base-patch16"}, "go with open-set tags"),
    ({"tags": "red umbrella", "only_tags": ["dog"]}, "which vocab='open' leaves out"),
    ({"threshold": "0.5"}, "give a number from 0 to 1"),
    ({"threshold": 1.5}, "give a number from 0 to 1"),
])
def test_what_the_command_line_refuses_the_api_refuses(ramplus_tiny: OfficialFixture, options: dict, said: str) -> None:
    with pytest.raises(UsageError, match=said):
        load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", **options)


def test_options_given_as_one_string_are_one_value(tmp_path: Path, ramplus_tiny: OfficialFixture) -> None:
    assert InputOptions(paths="photos").paths == ("photos",)  # not ("p", "h", ...)
    assert InputOptions(paths=["a", Path("b")], exclude="drafts").exclude == ("drafts",)
    assert ModelOptions(only_tags="dog, sky").only_tags == ("dog", "sky")


def test_a_run_stopped_before_it_began_tags_nothing(tmp_path: Path, ramplus_tiny: OfficialFixture) -> None:
    stop = threading.Event()
    stop.set()
    model = ModelOptions(checkpoint=str(ramplus_tiny.checkpoint), tag_list=str(ramplus_tiny.tags),
                         thresholds=str(ramplus_tiny.thresholds), device="cpu")
    job = Job(inputs=InputOptions(paths=str(ramplus_tiny.images)), model=model,
              outputs=OutputOptions(out=str(tmp_path / "tags.parquet")))
    done = run_job(job, stop=stop)
    assert done.result.stopped and done.result.images == 0
    assert run_job(job).result.images == len(list(ramplus_tiny.images.iterdir()))


def test_image_urls_are_tagged_as_run_reads_them(tmp_path: Path, tiny_tagger, ramplus_tiny: OfficialFixture) -> None:
    import functools
    import http.server

    (tmp_path / "a.jpg").write_bytes((ramplus_tiny.images / "demo4.jpg").read_bytes())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            found, missing = tiny_tagger.tag([f"{base}/a.jpg", f"{base}/gone.jpg"])
        finally:
            server.shutdown()
    local = tiny_tagger.tag(tmp_path / "a.jpg")
    assert found.error is None and found.path == f"{base}/a.jpg" and found.tags == local.tags
    assert missing.error is not None and "404" in missing.error and missing.tags == []


def test_weights_that_compute_no_numbers_stop_the_run(ramplus_tiny: OfficialFixture) -> None:
    """Damaged weights gave every image no tags and NaN scores, and the run said "0 errors"."""
    from ramtag.errors import CheckpointError

    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp32")
    with torch.no_grad():
        next(tagger.model.parameters()).fill_(float("nan"))
    with pytest.raises(CheckpointError, match=r"not numbers \(NaN\): its weights are damaged"):
        tagger.tag(Image.new("RGB", (32, 32)))


def test_tag_reads_images_as_stored_when_asked(ramplus_tiny: OfficialFixture, tmp_path: Path) -> None:
    """As `run --ignore-orientation`: the official code's scores for a photo EXIF marks as turned."""
    from test_cli_run import with_orientation

    name = next(n for n in ramplus_tiny.expected["meta"]["images_order"] if n.endswith(".jpg"))
    turned = tmp_path / "turned.jpg"
    turned.write_bytes(with_orientation((ramplus_tiny.images / name).read_bytes(), 6))
    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp32")
    official = np.array(ramplus_tiny.expected["images"][name]["scores"])
    as_stored = tagger.tag(turned, ignore_orientation=True)
    assert np.abs(as_stored.all_scores - official).max() < 1e-4
    assert np.abs(tagger.tag(turned).all_scores - official).max() > 1e-3
    with Image.open(turned) as image:  # a PIL image the same
        assert np.abs(tagger.tag(image, ignore_orientation=True).all_scores - official).max() < 1e-4


def test_what_a_researcher_hands_over_is_taken_or_refused_in_words(tiny_tagger, ramplus_tiny: OfficialFixture,
                                                                  tmp_path: Path) -> None:
    """numpy arrays were a TypeError about paths, numpy's int64 was 'not a whole number', tensors,
    None and bytes raised what Python raises; raise_errors tagged everything before raising; a
    file over the pixel limit named --max-pixels, which Python has not."""
    photo = Image.open(ramplus_tiny.images / "demo2.jpg").convert("RGB")
    pixels = np.asarray(photo)
    from_pil, from_array = tiny_tagger.tag(photo), tiny_tagger.tag(pixels)
    assert from_array.tags == from_pil.tags and np.array_equal(from_array.all_scores, from_pil.all_scores)
    several = tiny_tagger.tag([pixels, np.asarray(photo.convert("L")), pixels[:, :, :1]])
    assert len(several) == 3 and all(result.error is None for result in several)
    assert len(tiny_tagger.tag(ramplus_tiny.images / "demo2.jpg", top_k=np.int64(2)).tags) <= 2
    for wrong, said in [(torch.zeros(3, 8, 8), "'Tensor' is not an image ramtag reads"),
                        (None, "'NoneType' is not an image ramtag reads"), (b"a.jpg", "image bytes are not taken"),
                        (np.zeros((8, 8), np.float32), "give uint8 pixels"), (2.0, "'float' is not an image")]:
        with pytest.raises(UsageError, match=said):
            tiny_tagger.tag(wrong)
    seen: list[int] = []
    real = tiny_tagger.scores
    tiny_tagger.scores = lambda batch: seen.append(len(batch)) or real(batch)  # type: ignore[method-assign]
    try:
        with pytest.raises(Exception, match="nope.jpg: file not found"):
            tiny_tagger.tag([tmp_path / "nope.jpg", *[photo] * 6], batch_size=1, raise_errors=True)
    finally:
        del tiny_tagger.scores
    assert len(seen) <= 1  # raised with its batch, not after all seven
    big = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(big)
    assert "image too large" in tiny_tagger.tag(big, max_pixels=50_000).error
    assert tiny_tagger.tag(big, max_pixels=None).error is None
    with pytest.raises(UsageError, match="max_pixels 0: give a whole number"):
        tiny_tagger.tag(big, max_pixels=0)
    mapped = np.lib.format.open_memmap(tmp_path / "pixels.npy", mode="w+", dtype=np.uint8, shape=pixels.shape)
    mapped[:] = pixels
    assert tiny_tagger.tag(mapped).tags == from_pil.tags  # a memory-mapped dataset's image
    import pickle

    assert pickle.loads(pickle.dumps(from_pil)) == from_pil != several[1]  # == raised numpy's ValueError
