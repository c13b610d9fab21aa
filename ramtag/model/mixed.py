"""bf16 arithmetic inside an fp32 skeleton: the mixed precision for CPUs with native bf16.

Casting the whole model to bf16 is fast on such CPUs but rounds everything, the residual stream and
the LayerNorms included, and those roundings add up over Swin's 24 blocks and the decoder. Here
chosen blocks become *islands*: their weights are cast to bf16 once, they take their fp32 input in
bf16 and hand their output back in fp32. Between islands the residual sums and every LayerNorm stay
fp32, and so does everything not chosen.

Which blocks: those whose rounding moved tags least for the arithmetic they hold, measured on the
calibrated random model against fp32 with the official thresholds (``benchmarks/precision_agreement.py
--recipes``; README, Benchmarking). The decoder's feed-forward layers (28% of the model's arithmetic)
and the MLPs of Swin's first two stages (7% more) barely move a tag in bf16. The MLPs of the last two
stages, though they hold 35% of the arithmetic (42% with every stage's), moved about one tag in
twenty, and attention, whose softmax turns small errors in its logits into larger ones in its
weights, more still. The recipe is recorded with every output (``precision.BF16_RECIPE``).

A recipe is a comma-separated list of parts: ``swin.mlp``, ``swin.attn`` and ``swin.merge`` (every
stage's), ``swin0.mlp`` (one stage's), ``head.ffn``, ``head.attn``. The default recipe's stages that a smaller
model lacks are left out; a recipe given by name must fit the model.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..errors import UsageError
from ..precision import BF16_RECIPE
from .network import RamModel

ISLAND_DTYPE = torch.bfloat16
RECIPE = BF16_RECIPE  # what --precision bf16-mixed computes in bf16
_SWIN_PARTS = {"mlp": "mlp", "attn": "attn", "merge": "reduction"}
_HEAD_PARTS = ("ffn", "attn")


class Island(nn.Module):
    """``inner`` computing in ``dtype``: floating inputs cast to it, the output cast back."""

    def __init__(self, inner: nn.Module, dtype: torch.dtype = ISLAND_DTYPE) -> None:
        super().__init__()
        self.dtype = dtype
        self.inner = inner.to(dtype)

    def forward(self, x: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        def cast(value: object) -> object:
            return value.to(self.dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

        out = self.inner(cast(x), *map(cast, args), **{k: cast(v) for k, v in kwargs.items()})
        return out.to(x.dtype)


def parts(model: RamModel, recipe: str = RECIPE) -> Iterator[tuple[nn.Module, str]]:
    """``(owner, attribute)`` of each block ``recipe`` names (a usage error for an unknown part, or a
    stage the model does not have unless the recipe is the default one)."""
    stages = model.image_encoder.swin.layers
    for item in (piece.strip() for piece in recipe.split(",") if piece.strip()):
        where, _, part = item.partition(".")
        if where == "head" and part in _HEAD_PARTS:
            yield from ((layer, part) for layer in model.decoder.layers)
        elif where.startswith("swin") and part in _SWIN_PARTS and (where[4:] == "" or where[4:].isdigit()):
            chosen = range(len(stages)) if where == "swin" else [int(where[4:])]
            if recipe == RECIPE:
                chosen = [index for index in chosen if index < len(stages)]
            elif any(index >= len(stages) for index in chosen):
                raise UsageError(f"bf16 recipe {recipe!r}: the model has {len(stages)} Swin stages")
            name = _SWIN_PARTS[part]
            for index in chosen:
                for module in stages[index].modules():
                    if isinstance(getattr(module, name, None), nn.Module):
                        yield module, name
        else:
            raise UsageError(
                f"bf16 recipe {recipe!r}: unknown part {item!r}; use swin.mlp, swin.attn, swin.merge, "
                "swinN.<part>, head.ffn or head.attn"
            )


def with_islands(model: RamModel, recipe: str = RECIPE, dtype: torch.dtype = ISLAND_DTYPE) -> RamModel:
    """``model`` (changed in place) with the blocks ``recipe`` names computing in ``dtype``; blocks
    that are islands already stay as they are."""
    for owner, name in list(parts(model, recipe)):
        block = getattr(owner, name)
        if not isinstance(block, Island):  # named twice, or made an island before
            setattr(owner, name, Island(block, dtype))
    return model

