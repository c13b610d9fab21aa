"""Random weights in the released architecture: benchmarks and tests without a 3 GB download.

The weights are scaled so activations keep their size through the network (normal with std
1/sqrt(fan_in), LayerNorms at identity, unit-norm label embeddings), which gives spread-out scores
rather than a constant; they recognise nothing.
"""

from __future__ import annotations

import math

import torch

from .config import ModelConfig
from .load import _materialize_buffers, build_model
from .network import RamModel


@torch.no_grad()
def random_model(config: ModelConfig, *, seed: int = 0) -> RamModel:
    """A full ``RamModel`` with reproducible random weights (on the CPU, fp32)."""
    generator = torch.Generator().manual_seed(seed)
    model = build_model(config).to_empty(device="cpu")
    _materialize_buffers(model)
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
        elif leaf == "bias":
            param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
        else:
            fan_in = param[0].numel()
            param.copy_(torch.randn(param.shape, generator=generator) / math.sqrt(fan_in))
    return model.eval().requires_grad_(False)
