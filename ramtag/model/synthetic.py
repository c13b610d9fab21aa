"""Random weights in the released architecture: benchmarks and tests without a 3 GB download.

The weights are scaled so activations keep their size through the network (normal with std
1/sqrt(fan_in), unit-norm label embeddings), which gives spread-out scores rather than a constant;
they recognise nothing.

Plain random weights put about a quarter of all tags over the default threshold, where the released
weights put a few dozen of 4,585: every agreement figure measured on them (bf16 against fp32, say)
would count thousands of tags sitting near a threshold. ``calibrated=True`` scales the weights the
way a trained RAM++ looks from the outside: the projections into text space and the tag queries are
stronger (image features x1.8, word vectors x40, cross-attention queries x32, so that what a tag
attends to depends on the image), the classifier is sharpened and biased towards "no" (x6, bias
-1.32: most scores far below any threshold, as trained weights give), and LayerNorms and biases are
perturbed rather than left at identity and zero. On 12 real photos (full-size RAM++, seed 0) 1.0%
of all tags passed 0.68, from none to 307 a photo: the number of tags depends on the image more
than with trained weights.
"""

from __future__ import annotations

import math

import torch

from .config import ModelConfig
from .load import build_model
from .network import RamModel

# Weight scales of the calibrated model, by parameter name.
_CALIBRATION = {
    "image_proj.weight": 1.8,
    "wordvec_proj.weight": 40.0,
    "classifier.weight": 6.0,
}
_QUERY_SCALE = 32.0  # decoder.layers.N.attn.q.weight
CLASSIFIER_BIAS = -1.32


@torch.no_grad()
def random_model(config: ModelConfig, *, seed: int = 0, calibrated: bool = False) -> RamModel:
    """A full ``RamModel`` with reproducible random weights (on the CPU, fp32).

    ``calibrated``: scaled so that about 1% of tags pass 0.68, as with trained weights (above).
    """
    generator = torch.Generator().manual_seed(seed)
    model = build_model(config)  # Swin's derived buffers computed, every weight below written
    for name, param in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        if name == "reweight_scale":
            param.fill_(math.log(1 / 0.07))
        elif name == "label_embed":
            # A tag's descriptions are close to each other in text space, as real ones are.
            tags, per_tag, width = param.shape
            centre = torch.randn(tags, 1, width, generator=generator)
            spread = torch.randn(tags, per_tag, width, generator=generator) * 0.5
            param.copy_(centre + spread)
            param.div_(param.norm(dim=-1, keepdim=True))
        elif "relative_position_bias_table" in name:
            param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
        elif "norm" in name.lower():
            param.fill_(1.0 if leaf == "weight" else 0.0)
            if calibrated:
                spread = 0.1 if leaf == "weight" else 0.05
                param.add_(torch.randn(param.shape, generator=generator) * spread)
        elif leaf == "bias":
            param.copy_(torch.randn(param.shape, generator=generator) * (0.05 if calibrated else 0.02))
        else:
            fan_in = param[0].numel()
            param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))
            if calibrated:
                param.mul_(_scale_of(name))
    if calibrated:
        model.classifier.bias.fill_(CLASSIFIER_BIAS)
    return model.eval().requires_grad_(False)


def _scale_of(name: str) -> float:
    if name in _CALIBRATION:
        return _CALIBRATION[name]
    if name.startswith("decoder.") and name.endswith(".attn.q.weight"):
        return _QUERY_SCALE
    return 1.0
