"""Architecture as data.

A ``ModelConfig`` says everything needed to build a RAM or RAM++ network; which weights fill it is a
separate choice. The released models are small JSON files in ``configs/``; any other official-format
checkpoint gets its config inferred from its tensors (see ``convert.infer_config``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any, Literal

ModelKind = Literal["ram_plus", "ram"]
MODEL_KINDS: tuple[str, ...] = ("ram_plus", "ram")
LANGS = ("en", "zh", "both")  # which tag names a run writes: English, Chinese, or both
VOCAB_MODES = ("open", "both")  # open-set tags alone, or after the built-in vocabulary
# Where images become the model's input: Pillow in the decoding workers, exactly as the official
# code; or, for plain JPEGs, the GPU (nvJPEG decoding, torch's resize: ``devicejpeg``).
PREPROCESSING = ("pillow", "gpu")

# ImageNet statistics, as in the official ``get_transform``; they travel with the config so the
# transform can never drift from the weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    patch_size: int = 4

    @property
    def width(self) -> int:
        """Channels of the last stage (the official code's ``vision_width``)."""
        return self.embed_dim * 2 ** (len(self.depths) - 1)


@dataclass(frozen=True)
class DecoderConfig:
    """The alignment decoder: cross-attention then feed-forward, no self-attention."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    # Head count is a reshape, invisible in the weights; the official q2l_config.json fixes 4.
    num_heads: int = 4
    layer_norm_eps: float = 1e-12


@dataclass(frozen=True)
class ModelConfig:
    kind: ModelKind
    image_size: int
    swin: SwinConfig
    decoder: DecoderConfig
    num_tags: int
    descriptions_per_tag: int
    text_width: int = 512
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        data = dict(data)
        swin = dict(data.pop("swin"))
        swin["depths"] = tuple(swin["depths"])
        swin["num_heads"] = tuple(swin["num_heads"])
        decoder = data.pop("decoder")
        for key in ("mean", "std"):
            if key in data:
                data[key] = tuple(data[key])
        if data.get("kind") not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {data.get('kind')!r}")
        return cls(swin=SwinConfig(**swin), decoder=DecoderConfig(**decoder), **data)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

    def with_tags(self, num_tags: int) -> ModelConfig:
        data = self.to_dict()
        data["num_tags"] = num_tags
        return ModelConfig.from_dict(data)


def named_config(name: str) -> ModelConfig:
    """The config of a released model, e.g. ``ram_plus_swin_large_14m``."""
    path = resources.files("ramtag.model") / "configs" / f"{name}.json"
    if not path.is_file():
        raise KeyError(name)
    return ModelConfig.from_json(path.read_text(encoding="utf-8"))
