"""The tagging head: description re-weighting (RAM++) and the alignment decoder.

Tags become queries that attend to the image tokens through cross-attention only (no self-attention
between tags, as in Query2Label), then a feed-forward block; a linear layer gives one logit per tag.
Because tags never look at each other, any subset of tags can be decoded on its own, which is what
lets the decoder run in chunks and lets open-set tags join the built-in vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import DecoderConfig


class CrossAttention(nn.Module):
    def __init__(self, hidden: int, context_width: int, num_heads: int) -> None:
        super().__init__()
        if hidden % num_heads:
            raise ValueError(f"decoder width {hidden} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(context_width, hidden)
        self.v = nn.Linear(context_width, hidden)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        batch, n_query, hidden = queries.shape
        heads = self.num_heads

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.unflatten(-1, (heads, hidden // heads)).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(self.q(queries)), split(self.k(context)), split(self.v(context))
        )
        return self.out(attended.transpose(1, 2).reshape(batch, n_query, hidden))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, intermediate)
        self.fc2 = nn.Linear(intermediate, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class DecoderLayer(nn.Module):
    def __init__(self, config: DecoderConfig, context_width: int) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.attn = CrossAttention(hidden, context_width, config.num_heads)
        self.attn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.ffn = FeedForward(hidden, config.intermediate_size)
        self.ffn_norm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn_norm(queries + self.attn(queries, context))
        return self.ffn_norm(x + self.ffn(x))


class AlignmentDecoder(nn.Module):
    def __init__(self, config: DecoderConfig, context_width: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            DecoderLayer(config, context_width) for _ in range(config.num_layers)
        )

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            queries = layer(queries, context)
        return queries


def reweight_descriptions(
    image_cls: torch.Tensor, descriptions: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """Mix each tag's description embeddings by their similarity to the image (RAM++).

    ``image_cls`` is ``(B, E)``, ``descriptions`` is ``(T, D, E)``; returns ``(B, T, E)``. The weights
    are ``softmax_d(exp(log_scale) * <normalize(image_cls), e_td>)``. Both steps are single batched
    matrix products, so no ``(B, T, D, E)`` temporary is ever made.
    """
    num_tags, per_tag, width = descriptions.shape
    image_cls = F.normalize(image_cls, dim=-1)
    flat = descriptions.reshape(num_tags * per_tag, width)
    logits = (log_scale.exp() * image_cls) @ flat.t()
    weights = logits.view(-1, num_tags, per_tag).softmax(dim=-1)
    # (T, B, D) @ (T, D, E) -> (T, B, E)
    mixed = torch.bmm(weights.transpose(0, 1), descriptions)
    return mixed.transpose(0, 1)
