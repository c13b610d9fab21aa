"""Decoding in workers, failures as data, batching, streaming and timings, with the real tiny model."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ramtag import pipeline
from ramtag.inputs import ImageRef, discover
from ramtag.model.transform import preprocess
from ramtag.pipeline import ImageDataset, StageTimings, collate, default_workers, run_batches


def _jpeg(path: Path, size: tuple[int, int] = (40, 30), orientation: int | None = None) -> Path:
    image = Image.new("RGB", size, "teal")
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, "JPEG", exif=exif.tobytes())
    return path


def bad_folder(root: Path) -> dict[str, str]:
    """One good image and one file of each bad kind; returns name → a word its error contains."""
    root.mkdir(parents=True, exist_ok=True)
    _jpeg(root / "a_good.jpg")
    (root / "b_empty.jpg").write_bytes(b"")
    whole = io.BytesIO()
    Image.effect_noise((64, 64), 64).convert("RGB").save(whole, "JPEG", quality=95)
    (root / "c_truncated.jpg").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    (root / "d_text.png").write_text("this is not a picture\n")
    Image.new("RGB", (200, 200)).save(root / "e_huge.png")  # over the --max-pixels used with it
    return {"b_empty.jpg": "empty", "c_truncated.jpg": "truncated", "d_text.png": "not an image", "e_huge.png": "too large"}


def test_default_workers_leave_a_core_for_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    table = [(1, 0, 0, 0), (2, 1, 0, 1), (3, 2, 2, 2), (4, 3, 3, 3), (16, 4, 4, 15), (96, 4, 4, 32)]
    for cores, unknown, on_cpu, on_gpu in table:
        monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)), raising=False)
        assert default_workers() == unknown
        assert default_workers(cpu) == on_cpu  # a CPU model on 2 cores: decoding beside it only competes
        assert default_workers(gpu) == on_gpu  # a GPU model waits for decoding: every spare core decodes


def test_dataset_turns_every_failure_into_data(tmp_path: Path, tiny_tagger) -> None:
    expected = bad_folder(tmp_path)
    _jpeg(tmp_path / "f_rotated.jpg", size=(40, 20), orientation=6)  # stored landscape, shown portrait
    dataset = ImageDataset(tiny_tagger.preprocess, max_pixels=10_000)
    items = {ref.key: dataset[ref] for ref in discover([tmp_path])}
    items["gone.jpg"] = dataset[ImageRef(tmp_path / "gone.jpg", "gone.jpg")]
    expected["gone.jpg"] = "not found"
    for name, word in expected.items():
        item = items[name]
        assert item.pixels is None and item.width is None
        assert word in item.error and str(tmp_path) not in item.error
    good = items["a_good.jpg"]
    assert good.error is None and (good.width, good.height) == (40, 30)
    assert good.pixels.shape == (3, tiny_tagger.config.image_size, tiny_tagger.config.image_size)
    assert (items["f_rotated.jpg"].width, items["f_rotated.jpg"].height) == (20, 40)
    assert all(item.seconds >= 0 for item in items.values())


def test_collate_keeps_failures_beside_the_stacked_pixels(tmp_path: Path, tiny_tagger) -> None:
    bad_folder(tmp_path)
    dataset = ImageDataset(tiny_tagger.preprocess)
    refs = [ImageRef(tmp_path / n, n) for n in ["b_empty.jpg", "a_good.jpg", "d_text.png", "e_huge.png"]]
    batch = collate([dataset[ref] for ref in refs])
    assert [item.key for item in batch.items] == [ref.key for ref in refs]
    assert batch.pixels.shape[0] == 2
    assert all(item.pixels is None for item in batch.items)
    assert collate([dataset[refs[0]]]).pixels is None


def test_run_batches_matches_the_official_scores(ramplus_tiny, tiny_tagger) -> None:
    expected = ramplus_tiny.expected["images"]
    timings = StageTimings()
    batches = list(run_batches(discover([ramplus_tiny.images]), tiny_tagger, batch_size=4, workers=0, timings=timings))
    assert [len(batch) for batch in batches] == [4, 4, 1]
    records = [record for batch in batches for record in batch]
    assert sorted(record.key for record in records) == sorted(expected)
    for record in records:
        want = expected[record.key]
        assert record.error is None
        np.testing.assert_allclose(record.result.all_scores, want["scores"], atol=1e-4)
        assert sorted(record.result.tags) == sorted(want["tags"])
        assert record.result.scores == sorted(record.result.scores, reverse=True)
    assert timings.images == 9 and timings.batches == 3
    assert timings.model > 0 and timings.decode > 0


def test_errors_stay_in_place_and_top_k_caps_tags(tmp_path: Path, tiny_tagger) -> None:
    expected = bad_folder(tmp_path)
    _jpeg(tmp_path / "z_good.jpg", size=(30, 30))
    records = [
        record
        for batch in run_batches(discover([tmp_path]), tiny_tagger, batch_size=3, workers=0, top_k=1, max_pixels=10_000)
        for record in batch
    ]
    assert [record.key for record in records] == sorted(p.name for p in tmp_path.iterdir())
    for record in records:
        if record.key in expected:
            assert expected[record.key] in record.error and record.result is None
        else:
            assert record.error is None and len(record.result.tags) <= 1


def test_refs_are_pulled_lazily(tmp_path: Path, tiny_tagger) -> None:
    """A million refs must not be materialised: the loader pulls them as batches are needed."""
    image = _jpeg(tmp_path / "one.jpg", size=(16, 16))
    pulled = []

    def endless():
        for number in itertools.count():
            pulled.append(number)
            yield ImageRef(image, f"{number}.jpg")

    batches = run_batches(endless(), tiny_tagger, batch_size=2, workers=0)
    first = next(batches)
    assert [record.key for record in first] == ["0.jpg", "1.jpg"]
    assert len(pulled) <= 4
    batches.close()


def test_workers_decode_in_other_processes(tmp_path: Path, tiny_tagger) -> None:
    expected = bad_folder(tmp_path)
    records = [
        record
        for batch in run_batches(discover([tmp_path]), tiny_tagger, batch_size=2, workers=2, max_pixels=10_000)
        for record in batch
    ]
    assert [record.key for record in records] == sorted(p.name for p in tmp_path.iterdir())
    assert {record.key for record in records if record.error} == set(expected)


def test_batch_pins_memory_only_when_asked(tiny_tagger) -> None:
    pixels = preprocess(Image.new("RGB", (8, 8)), tiny_tagger.config)
    loader = pipeline.make_loader([], tiny_tagger, workers=0)
    assert loader.pin_memory is False  # CPU model: pinning would only cost time
    assert collate([pipeline.Prepared("a", pixels, 8, 8, None)]).pixels.dtype == torch.float32


def test_more_workers_than_cores_is_said_once_in_ramtags_words(monkeypatch: pytest.MonkeyPatch, tiny_tagger) -> None:
    import warnings

    monkeypatch.setattr(pipeline.os, "sched_getaffinity", lambda _pid: {0}, raising=False)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        loader = pipeline.make_loader(iter([]), tiny_tagger, workers=2)
        assert list(loader) == []
    assert [str(w.message) for w in said] == [
        "--workers 2 is more than the 1 CPU this process may use: decoding may be slower, not faster"]
