"""The Python API: a loaded model with its vocabulary, ready to tag images.

    from ramtag import load_tagger
    tagger = load_tagger()                      # RAM++, downloaded at first use
    for result in tagger.tag(["cat.jpg", pil_image]):
        print(result.tags, result.scores)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from . import __version__
from .devices import precision_name, resolve_device, resolve_precision
from .errors import UsageError
from .model.config import MODEL_KINDS
from .model.labels import TagVocabulary
from .model.load import LoadInfo, load_model
from .model.network import RamModel
from .model.transform import preprocess


@dataclass(frozen=True)
class TagResult:
    """Tags over threshold by descending score, and the score of every vocabulary tag."""

    tags: list[str]
    scores: list[float]
    tags_zh: list[str] | None
    all_scores: np.ndarray


class Tagger:
    def __init__(
        self,
        model: RamModel,
        vocabulary: TagVocabulary,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        info: LoadInfo | None = None,
    ) -> None:
        if len(vocabulary) != model.config.num_tags:
            raise UsageError(
                f"the vocabulary has {len(vocabulary)} tags but the model has {model.config.num_tags}"
            )
        self.device = device or torch.device("cpu")
        self.dtype = dtype
        self.model = model.to(device=self.device, dtype=dtype)
        self.vocabulary = vocabulary
        self.info = info

    @property
    def config(self):  # -> ModelConfig
        return self.model.config

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """``(3, S, S)`` float32 input for one decoded (already EXIF-oriented) image."""
        return preprocess(image, self.config)

    @torch.inference_mode()
    def scores(self, batch: torch.Tensor) -> np.ndarray:
        """Sigmoid scores ``(B, T)`` for a preprocessed batch ``(B, 3, S, S)``."""
        batch = batch.to(device=self.device, dtype=self.dtype, non_blocking=True)
        logits = self.model(batch)
        return torch.sigmoid(logits.float()).cpu().numpy()

    def result(self, scores: np.ndarray, top_k: int | None = None) -> TagResult:
        """Turn one image's scores into its tags (over threshold, best first, at most ``top_k``)."""
        picked = np.flatnonzero(self.vocabulary.selected(scores))
        order = picked[np.argsort(-scores[picked], kind="stable")]
        if top_k is not None:
            order = order[:top_k]
        zh = self.vocabulary.tags_zh
        return TagResult(
            tags=[self.vocabulary.tags[i] for i in order],
            scores=[float(scores[i]) for i in order],
            tags_zh=[zh[i] for i in order] if zh is not None else None,
            all_scores=scores,
        )

    def tag(
        self,
        images: Sequence[str | Path | Image.Image],
        *,
        batch_size: int = 8,
        top_k: int | None = None,
    ) -> list[TagResult]:
        """Tag paths or PIL images; a file that cannot be decoded raises ``ImageDecodeError``."""
        results: list[TagResult] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            decoded = [item if isinstance(item, Image.Image) else _decode(item) for item in chunk]
            batch = torch.stack([self.preprocess(image) for image in decoded])
            results.extend(self.result(row, top_k) for row in self.scores(batch))
        return results

    def metadata(self) -> dict[str, Any]:
        """Provenance recorded with every output: enough to tell whether results are comparable."""
        return {
            "ramtag_version": __version__,
            "model_kind": self.config.kind,
            "checkpoint": str(self.info.path) if self.info else None,
            "checkpoint_sha256": self.info.sha256 if self.info else None,
            "input_size": self.config.image_size,
            "precision": precision_name(self.dtype),
            "vocabulary": list(self.vocabulary.tags),
            "thresholds": [round(float(t), 6) for t in self.vocabulary.thresholds],
        }


def load_vocabulary(
    *,
    tag_list: Path | None = None,
    tag_list_zh: Path | None = None,
    thresholds: Path | None = None,
    threshold: float | None = None,
) -> TagVocabulary:
    """The given files, or the official lists (downloaded and checked at first use).

    The official Chinese list and thresholds only go with the official tag list: a custom
    ``tag_list`` gets no Chinese names unless given and 0.68 wherever no threshold is given.
    """
    if tag_list is None:
        from .model.download import data_file

        tag_list = data_file("tag_list")
        tag_list_zh = tag_list_zh or data_file("tag_list_zh")
        thresholds = thresholds or data_file("thresholds")
    vocabulary = TagVocabulary.from_files(tag_list, tag_list_zh, thresholds)
    return vocabulary.with_threshold(threshold) if threshold is not None else vocabulary


def load_tagger(
    checkpoint: str | Path | None = None,
    *,
    model: str | None = None,
    tag_list: str | Path | None = None,
    tag_list_zh: str | Path | None = None,
    thresholds: str | Path | None = None,
    threshold: float | None = None,
    device: str = "auto",
    precision: str = "auto",
    image_size: int | None = None,
) -> Tagger:
    """Load RAM++ (default) or RAM with its vocabulary.

    Without ``checkpoint`` the released weights of ``model`` are downloaded at first use; with it,
    the model kind is read from the file and ``model``, when given, must agree.
    """
    if model is not None and model not in MODEL_KINDS:
        raise UsageError(f"unknown model {model!r}; use one of {', '.join(MODEL_KINDS)}")
    vocabulary = load_vocabulary(
        tag_list=_path(tag_list),
        tag_list_zh=_path(tag_list_zh),
        thresholds=_path(thresholds),
        threshold=threshold,
    )
    if checkpoint is None:
        from .model.download import weights_file

        checkpoint = weights_file(model or "ram_plus")
    network, info = load_model(
        Path(checkpoint), num_tags=len(vocabulary), kind=model, image_size=image_size
    )
    target = resolve_device(device)
    return Tagger(
        network, vocabulary, device=target, dtype=resolve_precision(precision, target), info=info
    )


def _decode(path: str | Path) -> Image.Image:
    from .inputs import decode_image

    return decode_image(Path(path))


def _path(value: str | Path | None) -> Path | None:
    return Path(value) if value is not None else None
