"""``ramtag bench`` and the model-stage split, on the tiny fixture and a tiny random architecture."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ramtag.bench import random_tagger, synthetic_vocabulary, write_synthetic_images
from ramtag.model.config import ModelConfig
from ramtag.model.labels import TagVocabulary
from ramtag.pipeline import StageTimings

runner = CliRunner()
SPLIT = ("transfer", "backbone", "head")
# A RAM++ small enough to build with random weights in well under a second.
TINY_CONFIG = {
    "kind": "ram_plus",
    "image_size": 384,
    "swin": {"embed_dim": 16, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 2, 2], "window_size": 12},
    "decoder": {"hidden_size": 32, "num_layers": 1, "intermediate_size": 64, "num_heads": 4},
    "text_width": 64,
    "num_tags": 5,
    "descriptions_per_tag": 3,
}


def bench(*args: str | Path):
    from ramtag.cli.app import app

    result = runner.invoke(app, ["bench", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_scores_split_the_model_time_and_keep_the_scores() -> None:
    tagger = random_tagger(ModelConfig.from_dict(TINY_CONFIG), device="cpu", precision="fp32")
    batch = torch.randn(2, 3, 384, 384, generator=torch.Generator().manual_seed(0))
    descriptions = torch.randn(2, TINY_CONFIG["descriptions_per_tag"], TINY_CONFIG["text_width"])
    open_set = tagger.with_open_set(
        TagVocabulary.from_names(["kite", "lamp"]), descriptions, keep_builtin=True
    )
    for tagger in (tagger, open_set):
        timings = StageTimings()
        timed = tagger.scores(batch, timings)
        assert np.array_equal(timed, tagger.scores(batch))
        assert timed.shape == (2, len(tagger.vocabulary))
        assert timings.backbone > 0 and timings.head > 0 and timings.transfer >= 0
        assert timings.model == 0  # the caller times the whole call (run_batches does)


def test_synthetic_images_are_distinct_photos_of_the_size_asked(tmp_path: Path) -> None:
    paths = write_synthetic_images(tmp_path, 3, (96, 64))
    assert [path.name for path in paths] == sorted(path.name for path in tmp_path.iterdir())
    pixels = []
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.size == (96, 64)
            pixels.append(np.asarray(image.convert("RGB"), dtype=np.int16))
    assert np.abs(pixels[0] - pixels[1]).mean() > 10
    again = tmp_path / "again"
    again.mkdir()  # made by two processes: the same bytes, file for file
    copies = write_synthetic_images(again, 3, (96, 64), processes=2)
    assert [path.read_bytes() for path in copies] == [path.read_bytes() for path in paths]
    assert synthetic_vocabulary(4585).tags[:2] == ("tag0000", "tag0001")
    assert synthetic_vocabulary(4585).tags[-1] == "tag4584"
    assert float(synthetic_vocabulary(3).thresholds[0]) == pytest.approx(0.68)


def test_bench_json_figures_are_consistent(ramplus_tiny) -> None:
    result = bench(
        "--checkpoint", ramplus_tiny.checkpoint, "--synthetic", "6", "--image-size", "400x300",
        "--batch-size", "2", "--workers", "0", "--device", "cpu", "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    settings = data["settings"]
    assert settings["weights"] == str(ramplus_tiny.checkpoint) and settings["model"] == "ram_plus"
    assert settings["num_tags"] == 16  # no --tag-list: a made-up vocabulary of the checkpoint's size
    assert (settings["batch_size"], settings["workers"], settings["warmup_batches"]) == (2, 0, 1)
    assert (settings["device"], settings["precision"]) == ("cpu", "fp32")
    assert (data["images"], data["measured_images"], data["errors"]) == (6, 4, 0)
    assert data["images_from"] == "6 synthetic JPEGs, 400x300"

    ms = data["ms_per_image"]
    assert set(ms) == {"decode", "wait", "device_decode", "transfer", "backbone", "head", "model", "write"}
    assert all(value >= 0 for value in ms.values())
    assert settings["preprocess"] == "pillow" and ms["device_decode"] == 0  # JPEGs decoded in the workers
    assert ms["backbone"] > 0 and ms["head"] > 0 and ms["decode"] > 0 and ms["write"] > 0
    slack = 0.01  # rounding to microseconds
    assert sum(ms[stage] for stage in SPLIT) <= ms["model"] + slack
    assert ms["decode"] <= ms["wait"] + slack  # without workers, decoding is what the model waits for
    per_image_ms = 1000 * data["wall_s"] / data["measured_images"]
    assert ms["wait"] + ms["model"] + ms["write"] <= per_image_ms + slack  # the main thread's stages
    assert data["images_per_s"] > 0
    assert data["images_per_s"] == pytest.approx(data["measured_images"] / data["wall_s"], rel=1e-2)
    assert 0 < data["startup_s"] <= data["ready_s"]  # loading is part of the start-up since import
    assert data["peak_rss_mb"] > 0
    assert data["peak_worker_rss_mb"] is None and data["peak_gpu_mb"] is None
    machine = data["machine"]
    assert machine["cpu"] and machine["cores"] >= 1 and machine["torch_threads"] >= 1
    assert machine["device_name"] is None
    from ramtag.bench import VECTOR_FLAGS
    from ramtag.cpu import cpu_flags

    assert machine["cpu_flags"] == [flag for flag in VECTOR_FLAGS if flag in cpu_flags()]
    assert machine["native_bf16"] is None  # conftest says no: RAMTAG_NATIVE_BF16=0
    from ramtag.model.packed import enabled

    assert data["settings"]["packed_linear"] is enabled()
    assert "loading the model" in result.stderr


def test_random_weights_with_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMTAG_NATIVE_BF16", "1")  # what auto goes by is said with the machine
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_CONFIG), encoding="utf-8")
    result = bench(
        "--random-weights", "--config", config, "--synthetic", "4", "--image-size", "64x48",
        "--batch-size", "2", "--workers", "0", "--device", "cpu", "--precision", "fp32",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    from ramtag.model.packed import enabled

    packed = " (linear layers packed for oneDNN)" if enabled() else ""
    assert lines[0].startswith(f"ram_plus (random weights), cpu fp32{packed}, batch 2, 0 workers;")
    assert "images/s over 2 images" in result.stdout
    machine = next(line for line in lines if line.startswith("machine: "))
    assert "; native bf16: RAMTAG_NATIVE_BF16=1), " in machine and re.search(r" \d+ cores?, torch ", machine)
    for words in ("decode+preprocess (within the wait)", "wait for decoded batches", "backbone",
                  "re-weighting + decoder", "write", "peak RSS"):
        assert words in result.stdout, words
    assert "host to device" not in result.stdout and "nvJPEG" not in result.stdout  # a CPU does neither


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--synthetic", "2"], "--random-weights"),
        (["--random-weights", "--checkpoint", "{ckpt}"], "not both"),
        (["--checkpoint", "{ckpt}", "--config", "ram_swin_large_14m"], "--config goes with"),
        (["--random-weights", "--config", "swin_tiny"], "unknown config"),
        (["--checkpoint", "{ckpt}", "--image-size", "big"], "WIDTHxHEIGHT"),
        (["--checkpoint", "{ckpt}", "--images", "{tmp}", "--synthetic", "3"], "not both"),
        (["--checkpoint", "{ckpt}", "--device", "cpu", "--preprocess", "gpu"], "CUDA GPU"),
        (["--checkpoint", "{ckpt}", "--preprocess", "gpu", "--draft-decode"], "one or the other"),
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, ramplus_tiny, args: list[str], message: str) -> None:
    fill = {"ckpt": ramplus_tiny.checkpoint, "tmp": tmp_path}
    result = bench(*[arg.format(**fill) for arg in args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreadable_images_are_left_out_of_images_per_second(tmp_path: Path, ramplus_tiny) -> None:
    """They counted as images timed: a folder of broken files measured '22 images/s'."""
    for number in range(4):
        Image.new("RGB", (64, 48), (number * 50, 90, 160)).save(tmp_path / f"{number}.jpg", "JPEG")
    (tmp_path / "9broken.jpg").write_bytes(b"not a jpeg")  # sorted last: in the measured part
    args = ["--checkpoint", ramplus_tiny.checkpoint, "--batch-size", "1", "--workers", "0", "--device", "cpu"]
    result = bench(*args, "--images", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["images"], data["measured_images"], data["errors"]) == (5, 3, 1)
    assert "1 unreadable image left out" in bench(*args, "--images", tmp_path).stdout
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (broken / name).write_bytes(b"not a jpeg")
    refused = bench(*args, "--images", broken)
    assert refused.exit_code == 2 and "no image after the warm-up could be tagged (e.g. a.jpg" in refused.stderr


def test_too_few_images_for_the_warm_up_is_said_before_loading(ramplus_tiny) -> None:
    result = bench(
        "--checkpoint", ramplus_tiny.checkpoint, "--synthetic", "2", "--image-size", "32x32",
        "--batch-size", "2", "--warmup", "1",
    )
    assert result.exit_code == 2
    assert "none left to measure" in result.stderr and "loading the model" not in result.stderr
