"""The released architecture at full size: Swin-L, 4,585 tags x 51 descriptions (random weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import FIXTURES
from ramtag.model.config import named_config
from ramtag.model.convert import export_official
from ramtag.model.load import load_model
from ramtag.model.synthetic import random_model
from ramtag.model.transform import preprocess


@pytest.mark.slow
def test_full_size_ram_plus_round_trips_and_runs(tmp_path: Path) -> None:
    config = named_config("ram_plus_swin_large_14m")
    source = random_model(config, seed=0)
    path = tmp_path / "ram_plus_swin_large_14m.pth"
    torch.save({"model": export_official(source)}, path)

    loaded, info = load_model(path, num_tags=4585)
    assert info.config == config and not info.from_cache
    assert tuple(loaded.label_embed.shape) == (4585, 51, 512)
    cached, again = load_model(path, num_tags=4585)
    assert again.from_cache

    image = Image.open(FIXTURES / "official_ramplus_tiny" / "images" / "demo4.jpg")
    batch = preprocess(image, config)[None]
    assert batch.shape == (1, 3, 384, 384)
    with torch.inference_mode():
        want = source(batch)
        got = loaded(batch)
        got_cached = cached(batch)
    assert got.shape == (1, 4585)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    torch.testing.assert_close(got_cached, want, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_the_calibrated_random_model_puts_about_one_percent_of_tags_over_threshold() -> None:
    config = named_config("ram_plus_swin_large_14m")
    model = random_model(config, seed=0, calibrated=True)
    photos = [FIXTURES / "official_ramplus_tiny" / "images" / name for name in ("demo2.jpg", "demo3.jpg", "demo4.jpg")]
    batch = torch.stack([preprocess(Image.open(path).convert("RGB"), config) for path in photos])
    with torch.inference_mode():
        scores = torch.sigmoid(model(batch))
    passed = (scores > 0.68).sum(dim=1)
    # trained weights put a few dozen of the 4,585 tags over threshold, a different number per photo
    # (plain random weights: about a quarter of them)
    assert 0.002 < float(passed.sum()) / scores.numel() < 0.03
    assert len(set(passed.tolist())) > 1
    assert float(scores.median()) < 0.05  # most tags far below any threshold
