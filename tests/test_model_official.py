"""ramtag computes what the official RAM++ and RAM code compute (golden outputs in ../shared)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ramtag import load_tagger

FIXTURE_NAMES = ["ramplus_tiny", "ram_tiny"]


def _official_order(tags: list[str], vocabulary: tuple[str, ...]) -> list[str]:
    """The official code lists tags in vocabulary order; ramtag by score."""
    return sorted(tags, key=vocabulary.index)


@pytest.mark.parametrize("fixture_name", FIXTURE_NAMES)
@pytest.mark.parametrize("batch_size", [1, 9])
def test_scores_and_tags_match_official(fixture_name: str, batch_size: int, request) -> None:
    fixture = request.getfixturevalue(fixture_name)
    expected = fixture.expected
    names = expected["meta"]["images_order"]
    tagger = load_tagger(**fixture.tagger_kwargs(), device="cpu", precision="fp32")
    assert tagger.config.kind == ("ram_plus" if fixture_name == "ramplus_tiny" else "ram")

    images = [Image.open(fixture.images / name) for name in names]
    results = tagger.tag(images, batch_size=batch_size)

    assert len(results) == len(names)
    vocabulary = tagger.vocabulary.tags
    for name, result in zip(names, results):
        want = expected["images"][name]
        np.testing.assert_allclose(result.all_scores, want["scores"], atol=1e-4, rtol=0)
        assert _official_order(result.tags, vocabulary) == want["tags"], name
        zh_order = [tagger.vocabulary.tags_zh[vocabulary.index(t)] for t in _official_order(result.tags, vocabulary)]
        assert zh_order == want["tags_chinese"], name
        assert result.tags_zh is not None and sorted(result.tags_zh) == sorted(want["tags_chinese"])
        # Best first, and every listed tag is over its own threshold.
        assert result.scores == sorted(result.scores, reverse=True)
        for tag, score in zip(result.tags, result.scores):
            assert score > tagger.vocabulary.thresholds[vocabulary.index(tag)]


@pytest.mark.parametrize("fixture_name", FIXTURE_NAMES)
def test_preprocessing_matches_official(fixture_name: str, request) -> None:
    fixture = request.getfixturevalue(fixture_name)
    expected = fixture.expected
    tagger = load_tagger(**fixture.tagger_kwargs(), device="cpu")
    for name in expected["meta"]["images_order"]:
        tensor = tagger.preprocess(Image.open(fixture.images / name))
        assert tensor.shape == (3, 384, 384)
        np.testing.assert_allclose(
            tensor.mean(dim=(1, 2)).numpy(), expected["images"][name]["input_mean_per_channel"], atol=1e-6
        )


def test_logits_match_official(ramplus_tiny) -> None:
    """The raw decoder output, before the sigmoid, agrees too (a stricter check near 0 and 1)."""
    import torch

    expected = ramplus_tiny.expected
    names = expected["meta"]["images_order"]
    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu")
    batch = torch.stack([tagger.preprocess(Image.open(ramplus_tiny.images / n)) for n in names])
    with torch.inference_mode():
        logits = tagger.model(batch).numpy()
    want = np.array([expected["images"][n]["logits"] for n in names])
    np.testing.assert_allclose(logits, want, atol=1e-4, rtol=0)


def test_chunked_decoder_equals_whole(ramplus_tiny) -> None:
    """Decoding tags in chunks (bounded memory) changes nothing: tags never attend to each other."""
    import torch

    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu")
    image = tagger.preprocess(Image.open(ramplus_tiny.images / "demo4.jpg"))[None]
    with torch.inference_mode():
        whole = tagger.model(image)
        tagger.model.tag_chunk = 3
        chunked = tagger.model(image)
    torch.testing.assert_close(chunked, whole, atol=1e-5, rtol=0)
