"""Linear layers packed for oneDNN on x86 CPUs (model/packed.py): the same scores, a model that still behaves."""

from __future__ import annotations

import pickle
import platform

import pytest
import torch
from torch import nn

from ramtag import load_tagger
from ramtag.model import packed
from ramtag.model.config import DecoderConfig, ModelConfig, SwinConfig
from ramtag.model.packed import PackedLinear, packed_linears
from ramtag.model.synthetic import random_model

needs_packing = pytest.mark.skipif(
    not packed.enabled(), reason=f"no oneDNN packing on this machine ({platform.machine()})"
)
CONFIG = ModelConfig(kind="ram_plus", image_size=96, num_tags=5, descriptions_per_tag=3,
                     swin=SwinConfig(embed_dim=16, depths=(2, 2), num_heads=(2, 4), window_size=3),
                     decoder=DecoderConfig(hidden_size=32, num_layers=2, intermediate_size=64))


def _logits(model, pixels: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.forward_head(model.forward_features(pixels))


def _linears(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if type(module) is nn.Linear]


@needs_packing
def test_every_linear_layer_is_packed_and_the_scores_stay_within_fp32_rounding() -> None:
    pixels = torch.randn(3, 3, CONFIG.image_size, CONFIG.image_size, generator=torch.Generator().manual_seed(1))
    # Plain random weights: the calibrated ones' sharpened classifier magnifies fp32 rounding about
    # a hundredfold (nn.Linear's own logits are up to 4e-4 from an fp64 evaluation of them), so which
    # kernels a CPU has would decide such a comparison, not the packing.
    plain = random_model(CONFIG)
    expected = _logits(plain, pixels)
    model = packed_linears(random_model(CONFIG))
    assert _linears(plain) and not _linears(model)
    assert sum(isinstance(m, PackedLinear) for m in model.modules()) == len(_linears(plain))
    assert all(m.packed is not None for m in model.modules() if isinstance(m, PackedLinear))
    found = _logits(model, pixels)
    # Another summation order: relative rounding of ~1e-7 per product, a few dozen products deep.
    assert torch.allclose(found, expected, rtol=1e-4, atol=1e-4), (found - expected).abs().max()
    assert not torch.equal(found, torch.zeros_like(found))


@needs_packing
def test_a_packed_model_still_copies_casts_and_saves_like_an_ordinary_one() -> None:
    import copy

    pixels = torch.randn(2, 3, CONFIG.image_size, CONFIG.image_size, generator=torch.Generator().manual_seed(2))
    plain = random_model(CONFIG, calibrated=True)
    model = packed_linears(random_model(CONFIG, calibrated=True))
    state, expected = model.state_dict(), plain.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    twin = copy.deepcopy(model)
    assert torch.equal(_logits(twin, pixels), _logits(model, pixels))
    assert torch.equal(_logits(pickle.loads(pickle.dumps(model)), pixels), _logits(model, pixels))
    # Weights loaded into a packed model are packed again; another model's give its scores.
    other = random_model(CONFIG, seed=5)
    twin.load_state_dict(other.state_dict())
    assert torch.allclose(_logits(twin, pixels), _logits(other, pixels), rtol=1e-4, atol=1e-4)
    with pytest.raises(RuntimeError, match="Missing key"):
        twin.load_state_dict({k: v for k, v in other.state_dict().items() if not k.endswith("fc2.weight")})
    wrong = {k: (v[:1] if k.endswith("fc2.weight") else v) for k, v in other.state_dict().items()}
    with pytest.raises(RuntimeError, match=r"size mismatch for .*fc2\.weight"):  # not broadcast into it
        twin.load_state_dict(wrong)
    with pytest.raises(RuntimeError, match="Unexpected key.*fc2.scale"):
        twin.load_state_dict({**other.state_dict(), "decoder.layers.0.ffn.fc2.scale": torch.ones(1)})
    # A format oneDNN is not given (fp16) computes as nn.Linear does.
    half = copy.deepcopy(model).to(torch.float16)
    layers = [m for m in half.modules() if isinstance(m, PackedLinear)]
    assert layers and all(m.packed is None and m.weight.dtype == torch.float16 for m in layers)
    back = half.to(torch.float32)
    assert all(m.packed is not None for m in back.modules() if isinstance(m, PackedLinear))
    assert torch.allclose(_logits(back, pixels), _logits(plain, pixels), rtol=2e-2, atol=2e-2)


@needs_packing
def test_a_packed_layer_computes_as_nn_linear_where_autograd_autocast_or_assign_loading_are_asked_for() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(8, 4)
    layer = PackedLinear(linear)
    x = torch.randn(3, 8, requires_grad=True)
    layer(x).sum().backward()  # oneDNN's operator has no gradient: nn.Linear's arithmetic does
    assert x.grad is not None and torch.allclose(x.grad, linear.weight.sum(0).expand(3, 8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(2, 8)).dtype == linear(torch.randn(2, 8)).dtype == torch.bfloat16
    calls = []
    layer._register_load_state_dict_pre_hook(lambda *args: calls.append(args[1]))
    model = nn.Sequential(layer).to("meta")  # weights nowhere: loading with assign takes the tensors
    model.load_state_dict({"0.weight": linear.weight.detach() * 2, "0.bias": linear.bias.detach()}, assign=True)
    assert calls == ["0."] and layer.packed is not None and layer.bias.device.type == "cpu"
    expected = torch.nn.functional.linear(x.detach(), linear.weight.detach() * 2, linear.bias.detach())
    assert torch.allclose(layer(x.detach()), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64") or not torch.backends.mkldnn.is_available(),
                    reason="packing is for x86 CPUs with oneDNN")
def test_packing_is_on_wherever_it_is_meant_to_be(monkeypatch) -> None:
    # The operators are PyTorch's internal ones: a torch that renamed them would turn packing off
    # (and the 1.15x with it) without this.
    monkeypatch.delenv("RAMTAG_PACKED_LINEAR", raising=False)
    assert packed.enabled()


def test_packing_can_be_turned_off_and_leaves_other_formats_alone(monkeypatch) -> None:
    monkeypatch.setenv("RAMTAG_PACKED_LINEAR", "0")
    model = random_model(CONFIG)
    assert not packed.enabled()
    assert _linears(packed_linears(model)) == _linears(random_model(CONFIG))
    monkeypatch.delenv("RAMTAG_PACKED_LINEAR")
    half = random_model(CONFIG).to(torch.float16)  # emulated on most CPUs: oneDNN is not asked
    assert _linears(packed_linears(half)) == _linears(random_model(CONFIG))
    if packed.enabled() and packed._supported(torch.bfloat16):  # where oneDNN has bf16 kernels
        assert not _linears(packed_linears(random_model(CONFIG).to(torch.bfloat16)))


@needs_packing
def test_a_torch_whose_operators_fail_keeps_nn_linear(monkeypatch) -> None:
    def broken(*args):
        raise RuntimeError("mkldnn: could not create a primitive")

    monkeypatch.setattr(packed, "_product", broken)
    packed._supported.cache_clear()
    try:
        model = packed_linears(random_model(CONFIG))
        assert not packed.enabled() and _linears(model) == _linears(random_model(CONFIG))
    finally:
        packed._supported.cache_clear()


@needs_packing
def test_the_tagger_packs_on_cpus_and_scores_as_nn_linear_does(ramplus_tiny, monkeypatch) -> None:
    from ramtag.inputs import decode_image

    kwargs = dict(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="fp32")
    tagger = load_tagger(**kwargs)
    assert any(isinstance(m, PackedLinear) for m in tagger.model.modules()) and not _linears(tagger.model)
    monkeypatch.setenv("RAMTAG_PACKED_LINEAR", "0")
    plain = load_tagger(**kwargs)
    assert _linears(plain.model)
    images = sorted(ramplus_tiny.images.iterdir())[:2]
    batch = torch.stack([tagger.preprocess(decode_image(path)) for path in images])
    found, expected = tagger.scores(batch), plain.scores(batch)
    assert found.shape == expected.shape == (2, len(tagger.vocabulary))
    assert abs(found - expected).max() < 1e-5
