"""The Swin image encoder, taken from timm.

RAM and RAM++ use a standard Swin Transformer (Liu et al., 2021) without its classifier and read out
all final tokens with their average prepended. timm's ``SwinTransformer`` computes exactly what the
official copy computes once its checkpoint keys are remapped (``convert.py``).
"""

from __future__ import annotations

import torch
from . import _timm  # noqa: F401, I001 - before timm: see _timm.py

# isort: split
from timm.models.swin_transformer import SwinTransformer
from torch import nn

from .config import ModelConfig


def build_swin(config: ModelConfig) -> SwinTransformer:
    swin = config.swin
    return SwinTransformer(
        img_size=config.image_size,
        patch_size=swin.patch_size,
        in_chans=3,
        num_classes=0,
        embed_dim=swin.embed_dim,
        depths=swin.depths,
        num_heads=swin.num_heads,
        window_size=swin.window_size,
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_path_rate=0.0,
        # Weights always come from a checkpoint; timm's truncated-normal init would only cost time.
        weight_init="skip",
    )


class ImageEncoder(nn.Module):
    """Swin tokens, average token first: ``(B, 1 + H*W, C)``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.swin = build_swin(config)
        # timm keeps PyTorch's fused attention off for Swin by default (it calls it experimental);
        # with the window mask it computes the same attention, and on CPU it is up to ~20% faster
        # at the batch sizes ``ramtag run`` uses (benchmarks/compare_official.py measures it).
        for module in self.swin.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = True

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.swin.forward_features(images).flatten(1, 2)
        return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
