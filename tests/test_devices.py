"""Device defaults (precision, batch size) and the fp16 overflow retry."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from ramtag import load_tagger
from ramtag.devices import default_batch_size
from ramtag.precision import resolve
from ramtag.errors import UsageError
from ramtag.inputs import decode_image


def test_auto_precision_is_exact_on_cpus_and_fp16_on_gpus() -> None:
    assert resolve("auto", torch.device("cpu")).dtype is torch.float32
    assert resolve("auto", torch.device("cuda")).dtype is torch.float16
    assert resolve("auto", torch.device("mps")).dtype is torch.float16
    assert resolve("BF16", torch.device("cuda")).dtype is torch.bfloat16
    assert resolve("fp32", torch.device("cuda")).dtype is torch.float32
    assert resolve("auto", "cpu").name == "fp32" and resolve("auto", "cuda").name == "fp16"  # what outputs record
    with pytest.raises(UsageError, match="fp32, bf16, bf16-mixed, fp16 or int8"):
        resolve("int4", torch.device("cpu"))


def test_default_batch_size_small_on_cpus_large_on_gpus() -> None:
    assert default_batch_size(torch.device("cpu")) == 1
    assert default_batch_size(torch.device("cuda")) == 64


def _pixels(tagger, fixture) -> torch.Tensor:
    paths = sorted(fixture.images.iterdir())[:3]
    return torch.stack([tagger.preprocess(decode_image(path)) for path in paths])


def test_an_fp16_overflow_is_tagged_again_in_a_wider_precision(ramplus_tiny) -> None:
    reference = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp32")
    pixels = _pixels(reference, ramplus_tiny)
    expected = reference.scores(pixels)

    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp16")
    proj = tagger.model.image_encoder.swin.patch_embed.proj
    with torch.no_grad():  # LayerNorm follows the patch embedding, so scaling it changes nothing in
        # a wide format; weights scaled to just under fp16's 65,504 make sums of them overflow
        gain = 30_000 / float(proj.weight.abs().max())
        proj.weight.mul_(gain)
        proj.bias.mul_(gain)
        assert torch.isfinite(proj.weight).all()
        tokens = tagger.model.forward_features(pixels.to(torch.float16))
    assert not torch.isfinite(tokens).all()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = tagger.scores(pixels)
        second = tagger.scores(pixels)
    retries = [w for w in caught if "fp16 overflowed" in str(w.message)]
    assert len(retries) == 1 and "--precision bf16" in str(retries[0].message)  # said once
    for scores in (first, second):
        assert np.isfinite(scores).all()
        np.testing.assert_allclose(scores, expected, atol=0.03)  # bf16's rounding, not NaN
    assert next(tagger.model.parameters()).dtype is torch.float16  # the fp16 model stays in use


def test_fp16_without_overflow_uses_no_second_copy(ramplus_tiny) -> None:
    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp16")
    reference = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp32")
    pixels = _pixels(tagger, ramplus_tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no retry warning
        scores = tagger.scores(pixels)
    assert tagger._wide is None
    np.testing.assert_allclose(scores, reference.scores(pixels), atol=0.01)


def test_int8_is_a_cpu_mode_with_int8_linear_layers(ramplus_tiny) -> None:
    from torch import nn

    int8 = resolve("int8", torch.device("cpu"))
    assert int8.quantized and int8.per_image and int8.dtype is torch.float32  # a mode, not a tensor format
    with pytest.raises(UsageError, match="int8 runs on CPUs only"):
        resolve("int8", torch.device("cuda"))

    reference = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp32")
    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="int8")
    kinds = {name: type(module) for name, module in tagger.model.named_modules()}
    assert kinds["classifier"] is nn.Linear  # the scores' own layer stays fp32
    quantized = [name for name, kind in kinds.items() if kind.__module__.startswith("torch.ao.nn.quantized")]
    assert "image_proj" in quantized and any(name.startswith("image_encoder.") for name in quantized)
    assert not any(kind is nn.Linear for name, kind in kinds.items() if name != "classifier")
    assert tagger.metadata()["precision"] == "int8"  # recorded in every output, part of the resume settings

    pixels = _pixels(reference, ramplus_tiny)
    exact, fast = reference.scores(pixels), tagger.scores(pixels)
    assert fast.dtype == np.float32 and np.isfinite(fast).all()
    assert np.abs(fast - exact).mean() < 0.03  # close, not equal: that is why it is opt-in
    assert np.corrcoef(fast.ravel(), exact.ravel())[0, 1] > 0.98
    assert not np.array_equal(fast, exact)


def test_int8_open_set_tags_reuse_the_converted_model(ramplus_tiny) -> None:
    from ramtag.model.labels import TagVocabulary

    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="int8")
    embed = tagger.model.label_embed[:2].detach().clone()
    opened = tagger.with_open_set(TagVocabulary.from_names(["new a", "new b"]), embed, keep_builtin=True)
    assert opened.model is tagger.model and opened.metadata()["precision"] == "int8"
    pixels = _pixels(tagger, ramplus_tiny)
    scores, alone = opened.scores(pixels), tagger.scores(pixels)
    builtin = len(tagger.vocabulary)
    np.testing.assert_array_equal(scores[:, :builtin], alone)  # the built-in pass is untouched
    # copies of the first two tags score nearly like them: their own pass has its own int8 scales
    np.testing.assert_allclose(scores[:, builtin:], scores[:, :2], atol=0.05)


def test_int8_scores_do_not_depend_on_the_rest_of_the_batch(ramplus_tiny) -> None:
    tagger = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="int8")
    pixels = _pixels(tagger, ramplus_tiny)
    together = tagger.scores(pixels)
    # What this guards against is an image's int8 input scale depending on its neighbours: quantising
    # the batch as one tensor moves this fixture's scores by 0.02 on average (0.11 at most). Passing
    # the same image alone or as a slice of the batch is the same arithmetic, but the fp32 kernels
    # between the int8 layers may block and vectorise it differently (AVX-512/AMX CPUs do: 6e-8;
    # fp32 batch against single images: 4.5e-7 on an AVX2 machine), so equal means within 1e-5.
    for index in range(len(pixels)):
        np.testing.assert_allclose(tagger.scores(pixels[index : index + 1])[0], together[index], rtol=0, atol=1e-5)
