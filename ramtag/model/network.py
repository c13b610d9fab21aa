"""RAM and RAM++ as one network.

RAM++ (Huang et al., 2023, "Open-Set Image Tagging with Multi-Grained Text Supervision") describes
each tag by several text embeddings that are re-weighted per image; RAM (Zhang et al., 2023) has one
embedding per tag and no re-weighting. Everything else is shared: Swin tokens, projection to the
text width, tag queries ``relu(wordvec_proj(embedding))``, the alignment decoder, one logit per tag.
"""

from __future__ import annotations

import torch
from torch import nn

from .backbone import ImageEncoder
from .config import ModelConfig
from .head import AlignmentDecoder, reweight_descriptions

# Decoding all 4,585 tags at once makes the feed-forward activations of a batch large; chunks of tags
# keep memory flat whatever the vocabulary size, at no cost in results (tags are independent).
DEFAULT_TAG_CHUNK = 2048


class RamModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        text_width = config.text_width
        hidden = config.decoder.hidden_size
        self.image_encoder = ImageEncoder(config)
        self.image_proj = nn.Linear(config.swin.width, text_width)
        # Zeroed through nn.init, so that ``empty.uninitialised`` can skip it: 480 MB for RAM++.
        self.label_embed = nn.Parameter(
            nn.init.zeros_(torch.empty(config.num_tags, config.descriptions_per_tag, text_width)),
            requires_grad=False,
        )
        if config.kind == "ram_plus":
            self.reweight_scale = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.wordvec_proj: nn.Module = (
            nn.Identity() if hidden == text_width else nn.Linear(text_width, hidden)
        )
        self.decoder = AlignmentDecoder(config.decoder, context_width=text_width)
        self.classifier = nn.Linear(hidden, 1)
        self.tag_chunk = DEFAULT_TAG_CHUNK

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Projected image tokens ``(B, 1 + L, text_width)``, the average token first."""
        return self.image_proj(self.image_encoder(images))

    def tag_queries(
        self, image_tokens: torch.Tensor, label_embed: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One query per tag and image, ``(B, T, hidden)``."""
        embed = self.label_embed if label_embed is None else label_embed
        embed = embed.to(image_tokens.dtype)
        if self.config.kind == "ram_plus":
            mixed = reweight_descriptions(image_tokens[:, 0], embed, self.reweight_scale)
        else:
            mixed = embed[:, 0].expand(image_tokens.shape[0], -1, -1)
        return torch.relu(self.wordvec_proj(mixed))

    def forward_head(
        self,
        image_tokens: torch.Tensor,
        label_embed: torch.Tensor | None = None,
        tags: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits ``(B, T)`` for every tag of ``label_embed`` (default: the model's own).

        ``tags``: indices into ``label_embed`` of the only tags to decode, in that order (the rest
        cost nothing); their logits are theirs in a pass over every tag.
        """
        embed = self.label_embed if label_embed is None else label_embed
        count = embed.shape[0] if tags is None else tags.numel()
        chunks = []
        for start in range(0, count, self.tag_chunk):
            if tags is None:
                part = embed[start : start + self.tag_chunk]
            else:  # a copy of this chunk's embeddings only, never of the whole table
                part = embed.index_select(0, tags[start : start + self.tag_chunk].to(embed.device))
            queries = self.tag_queries(image_tokens, part)
            decoded = self.decoder(queries, image_tokens)
            chunks.append(self.classifier(decoded).squeeze(-1))
        return torch.cat(chunks, dim=1)

    def forward(self, images: torch.Tensor, label_embed: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(images), label_embed)
