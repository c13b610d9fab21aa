"""Official RAM/RAM++ checkpoints <-> ramtag's layout, as pure functions on state dicts.

The official files hold ``{'model': state_dict}`` with the Swin in its original layout (patch merging
at the end of a stage), derived buffers (``relative_position_index``, ``attn_mask``), the tagging
decoder in BERT naming, and for RAM also a caption decoder and tag encoder that tagging never uses.
Nothing here reads files; ``load.py`` does I/O and then a strict load.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
from . import _timm  # noqa: F401, I001 - before timm: see _timm.py

# isort: split
from timm.models.swin_transformer import checkpoint_filter_fn

from ..errors import CheckpointError
from .config import DecoderConfig, ModelConfig, SwinConfig

DEFAULT_DESCRIPTIONS_PER_TAG = 51
# Parts of RAM's checkpoint that only serve captioning (Tag2Text heritage): recognised, not loaded.
SKIPPED_PREFIXES = ("tag_encoder.", "text_decoder.")
# Window size -> input size of the released Swin configs, for checkpoints without attn_mask buffers.
INPUT_SIZE_FOR_WINDOW = {12: 384, 7: 224}

_DECODER_RENAMES = (
    (r"crossattention\.self\.query\.", "attn.q."),
    (r"crossattention\.self\.key\.", "attn.k."),
    (r"crossattention\.self\.value\.", "attn.v."),
    (r"crossattention\.output\.dense\.", "attn.out."),
    (r"crossattention\.output\.LayerNorm\.", "attn_norm."),
    (r"intermediate\.dense\.", "ffn.fc1."),
    (r"output\.dense\.", "ffn.fc2."),
    (r"output\.LayerNorm\.", "ffn_norm."),
)

Tensors = Mapping[str, torch.Tensor]


def unwrap(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The state dict inside ``{'model': ...}`` or ``{'state_dict': ...}``, or the dict itself."""
    for key in ("model", "state_dict"):
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping):
            checkpoint = inner
    state = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    # Some RAM releases name the tagging decoder ``vision_multi``; the official loader renames it.
    return {k.replace("vision_multi.", "tagging_head.", 1): v for k, v in state.items()}


def _indices(state: Tensors, pattern: str) -> list[int]:
    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return sorted(found)


def _infer_swin(state: Tensors) -> tuple[SwinConfig, int | None]:
    proj = state.get("visual_encoder.patch_embed.proj.weight")
    if proj is None:
        raise CheckpointError(
            "has no Swin image encoder (visual_encoder.patch_embed.proj.weight); "
            "only the Swin-based RAM and RAM++ checkpoints are supported"
        )
    stages = _indices(state, r"visual_encoder\.layers\.(\d+)\.")
    depths, heads = [], []
    for stage in stages:
        blocks = _indices(state, rf"visual_encoder\.layers\.{stage}\.blocks\.(\d+)\.")
        depths.append(len(blocks))
        table = state[f"visual_encoder.layers.{stage}.blocks.0.attn.relative_position_bias_table"]
        heads.append(int(table.shape[1]))
    first = state["visual_encoder.layers.0.blocks.0.attn.relative_position_bias_table"]
    window = (math.isqrt(int(first.shape[0])) + 1) // 2
    swin = SwinConfig(
        embed_dim=int(proj.shape[0]),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_size=window,
        patch_size=int(proj.shape[-1]),
    )
    # A shifted block's mask has one slice per window: the first stage is sqrt(nW) windows wide.
    image_size = None
    mask = state.get("visual_encoder.layers.0.blocks.1.attn_mask")
    if mask is not None and mask.ndim == 3:
        per_side = math.isqrt(int(mask.shape[0]))
        side = math.isqrt(int(mask.shape[1]))
        image_size = per_side * side * swin.patch_size
    return swin, image_size


def _infer_decoder(state: Tensors, num_heads: int) -> tuple[DecoderConfig, int]:
    prefix = "tagging_head.encoder.layer"
    layers = _indices(state, rf"{prefix}\.(\d+)\.")
    if not layers:
        raise CheckpointError("has no tagging decoder (tagging_head.encoder.layer.*)")
    query = state[f"{prefix}.0.crossattention.self.query.weight"]
    key = state[f"{prefix}.0.crossattention.self.key.weight"]
    inner = state[f"{prefix}.0.intermediate.dense.weight"]
    decoder = DecoderConfig(
        hidden_size=int(query.shape[0]),
        num_layers=len(layers),
        intermediate_size=int(inner.shape[0]),
        num_heads=num_heads,
    )
    return decoder, int(key.shape[1])


def infer_config(
    state: Tensors,
    *,
    num_tags: int | None = None,
    image_size: int | None = None,
    decoder_heads: int = 4,
) -> ModelConfig:
    """Read the architecture off an (unwrapped) official state dict.

    ``num_tags`` (the tag list's length) settles how many description embeddings belong to each tag
    in RAM++; without it 51 is assumed, as released.
    """
    if "label_embed" not in state:
        raise CheckpointError("has no label_embed tensor: not a RAM or RAM++ checkpoint")
    swin, size_from_mask = _infer_swin(state)
    decoder, context_width = _infer_decoder(state, decoder_heads)
    label_embed = state["label_embed"]
    rows, text_width = int(label_embed.shape[0]), int(label_embed.shape[1])
    if context_width != text_width:
        raise CheckpointError(
            f"decoder reads {context_width}-d image tokens but label embeddings are {text_width}-d"
        )
    kind = "ram_plus" if "reweight_scale" in state else "ram"
    if kind == "ram":
        tags, per_tag = rows, 1
    elif num_tags:
        if rows % num_tags:
            likely = f" ({rows // DEFAULT_DESCRIPTIONS_PER_TAG} tags of {DEFAULT_DESCRIPTIONS_PER_TAG} descriptions, " \
                "as released)" if rows % DEFAULT_DESCRIPTIONS_PER_TAG == 0 else ""
            raise CheckpointError(
                f"holds {rows} description embeddings{likely}, not a whole number per tag of a tag list of "
                f"{num_tags}: the tag list does not belong to this checkpoint; pass its own with --tag-list"
            )
        tags, per_tag = num_tags, rows // num_tags
    elif rows % DEFAULT_DESCRIPTIONS_PER_TAG == 0:
        tags, per_tag = rows // DEFAULT_DESCRIPTIONS_PER_TAG, DEFAULT_DESCRIPTIONS_PER_TAG
    else:
        raise CheckpointError(
            f"holds {rows} description embeddings, not a multiple of 51: give its tag list"
        )
    if image_size is None:
        image_size = size_from_mask or INPUT_SIZE_FOR_WINDOW.get(swin.window_size)
    if image_size is None:
        raise CheckpointError(
            f"uses Swin window {swin.window_size}, whose input size is unknown: give --image-size"
        )
    return ModelConfig(
        kind=kind,
        image_size=image_size,
        swin=swin,
        decoder=decoder,
        num_tags=tags,
        descriptions_per_tag=per_tag,
        text_width=text_width,
    )


def _rename_decoder(key: str) -> str:
    key = re.sub(r"^tagging_head\.encoder\.layer\.", "decoder.layers.", key)
    for pattern, replacement in _DECODER_RENAMES:
        key, count = re.subn(pattern, replacement, key)
        if count:
            break
    return key


def convert_official(state: Tensors, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Map an unwrapped official state dict onto ``RamModel``'s keys (no I/O, no loading).

    Derived Swin buffers are dropped and the Swin layout is converted by timm's own
    ``checkpoint_filter_fn``; RAM's captioning parts are skipped; everything else is renamed, and
    anything unknown is passed through so the strict load that follows names it.
    """
    config: ModelConfig = model.config  # type: ignore[assignment]
    swin_state = {
        k.removeprefix("visual_encoder."): v for k, v in state.items() if k.startswith("visual_encoder.")
    }
    out = {
        f"image_encoder.swin.{k}": v
        for k, v in checkpoint_filter_fn(swin_state, model.image_encoder.swin).items()
    }
    for key, value in state.items():
        if key.startswith("visual_encoder.") or key.startswith(SKIPPED_PREFIXES):
            continue
        if key == "label_embed":
            value = value.reshape(config.num_tags, config.descriptions_per_tag, -1)
        elif key.startswith("tagging_head."):
            key = _rename_decoder(key)
        elif key.startswith("fc."):
            key = "classifier." + key.removeprefix("fc.")
        out[key] = value
    return out


def export_official(model: torch.nn.Module, *, with_buffers: bool = True) -> dict[str, torch.Tensor]:
    """The inverse of ``convert_official``: ``RamModel`` weights in the official layout.

    Used to write official-format checkpoints (random full-size weights for benchmarks, round-trip
    tests). ``with_buffers`` adds the derived Swin buffers that released files carry.
    """
    config: ModelConfig = model.config  # type: ignore[assignment]
    inverse = {ours: theirs.replace("\\", "") for theirs, ours in _DECODER_RENAMES}
    tensors = dict(model.state_dict())
    if with_buffers:
        tensors.update(
            (name, buffer)
            for name, buffer in model.named_buffers()
            if name.endswith(("relative_position_index", "attn_mask"))
        )
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        if key.startswith("image_encoder.swin."):
            key = re.sub(
                r"^layers\.(\d+)\.downsample",
                lambda m: f"layers.{int(m.group(1)) - 1}.downsample",
                key.removeprefix("image_encoder.swin."),
            )
            key = "visual_encoder." + key
        elif key == "label_embed":
            value = value.reshape(config.num_tags * config.descriptions_per_tag, -1)
        elif key.startswith("decoder.layers."):
            key = key.replace("decoder.layers.", "tagging_head.encoder.layer.", 1)
            for ours, theirs in inverse.items():
                if f".{ours}" in key:
                    key = key.replace(f".{ours}", f".{theirs}", 1)
                    break
        elif key.startswith("classifier."):
            key = "fc." + key.removeprefix("classifier.")
        out[key] = value.detach().clone().contiguous()
    return out
