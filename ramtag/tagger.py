"""The Python API: a loaded model with its vocabulary, ready to tag images.

    from ramtag import load_tagger             # (ramtag.loading)
    tagger = load_tagger()                      # RAM++, downloaded at first use
    print(tagger.tag("cat.jpg").tags)           # one image: one result
    for result in tagger.tag(["cat.jpg", pil_image]):
        print(result.path, result.tags, result.scores, result.error)

``tag`` runs through the engine every command uses (``engine.runner``: the same decoding, batching
and device defaults); a file that cannot be used is a result with an ``error``, not an exception.
"""

from __future__ import annotations

import copy
import operator
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .version import __version__
from .errors import CheckpointError, UsageError
from .inputs.refs import MAX_PIXELS
from .model.labels import TagVocabulary, names_given
from .model.load import LoadInfo
from .model.network import RamModel
from .model.transform import preprocess
from .precision import Precision, overflow_fallback, resolve

if TYPE_CHECKING:
    from .pipeline import StageTimings


@dataclass(frozen=True, eq=False)
class TagResult:
    """Tags over threshold by descending score, and the score of every vocabulary tag.

    From ``Tagger.tag``: ``path`` is the file as given (None for a PIL image), ``width``/``height``
    its upright size, and ``error`` why it has no tags (then ``all_scores`` is None).
    """

    tags: list[str]
    scores: list[float]
    tags_zh: list[str] | None
    all_scores: np.ndarray | None
    path: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None

    def __eq__(self, other: object) -> bool:  # all_scores compared as arrays (== on them is elementwise)
        if not isinstance(other, TagResult):
            return NotImplemented
        mine, theirs = self.all_scores, other.all_scores
        same = mine is theirs or (mine is not None and theirs is not None and np.array_equal(mine, theirs))
        return same and [getattr(self, f) for f in _PLAIN] == [getattr(other, f) for f in _PLAIN]

    __hash__ = None  # type: ignore[assignment]  # lists inside: not hashable, as before


_PLAIN = ("tags", "scores", "tags_zh", "path", "width", "height", "error")


class Tagger:
    """``model`` prepared for ``precision`` on ``device`` (in place: cast, bf16 islands, int8 or, on x86
    CPUs, linear layers packed for oneDNN unless ``pack`` is False) with its vocabulary."""

    def __init__(
        self,
        model: RamModel,
        vocabulary: TagVocabulary,
        *,
        device: torch.device | None = None,
        precision: Precision | str = "fp32",
        info: LoadInfo | None = None,
        open_embed: torch.Tensor | None = None,
        builtin: bool = True,
        open_set: dict[str, Any] | None = None,
        builtin_tags: Sequence[int] | None = None,
        pack: bool = True,
    ) -> None:
        self.device = device or torch.device("cpu")
        # The policy says what the name means on this device, and refuses what does not fit it.
        self.precision = resolve(precision.name if isinstance(precision, Precision) else precision, self.device)
        self.model = model.to(device=self.device, dtype=self.precision.dtype)
        if self.precision.bf16_islands:
            from .model.mixed import with_islands

            self.model = with_islands(self.model)
        if self.precision.quantized:
            from .model.quantize import quantized_linears

            self.model = quantized_linears(self.model)
        elif pack and self.device.type == "cpu":
            # Last, so that each layer is packed once, in the format the cast or its island gave it.
            from .model.packed import packed_linears

            self.model = packed_linears(self.model)
        self.info = info
        self._set_tags(vocabulary, open_embed, builtin, open_set, builtin_tags)

    def _set_tags(
        self, vocabulary: TagVocabulary, open_embed: torch.Tensor | None, builtin: bool,
        open_set: dict[str, Any] | None, builtin_tags: Sequence[int] | None,
    ) -> None:
        # Open-set tags (``open_embed``, ``(T, D, width)``) come after the built-in ones, or alone.
        # ``builtin_tags``: the only built-in tags decoded (positions in the model's vocabulary).
        own = self.config.num_tags if builtin_tags is None else len(builtin_tags)
        expected = (own if builtin else 0) + (open_embed.shape[0] if open_embed is not None else 0)
        if len(vocabulary) != expected:
            raise UsageError(f"the vocabulary has {len(vocabulary)} tags but the model has {expected}")
        self.vocabulary = vocabulary
        self.builtin = builtin
        # (the tensors' format: int8 keeps fp32 between its int8 layers)
        self.open_embed = open_embed.to(self.device, self.precision.dtype) if open_embed is not None else None
        self.open_set = open_set
        self.builtin_tags = list(builtin_tags) if builtin_tags is not None else None
        self._builtin_index = (
            torch.tensor(self.builtin_tags, dtype=torch.long, device=self.device) if builtin_tags is not None else None
        )
        self._wide: tuple[RamModel, torch.Tensor | None] | None = None  # made at an fp16 overflow

    def _with_tags(
        self, vocabulary: TagVocabulary, *, open_embed: torch.Tensor | None = None, builtin: bool = True,
        open_set: dict[str, Any] | None = None, builtin_tags: Sequence[int] | None = None,
    ) -> Tagger:
        """A tagger of other tags sharing this one's model as it is: cast, islands and int8 layers
        are made once (preparing a prepared model again would undo bf16-mixed's islands)."""
        derived = copy.copy(self)
        derived._set_tags(vocabulary, open_embed, builtin, open_set, builtin_tags)
        return derived

    def __repr__(self) -> str:
        only = ", some built-in tags" if self.builtin_tags is not None else ""
        opened = f", {len(self.open_set['tags'])} open-set" if self.open_set is not None else ""
        return (f"Tagger({self.config.kind}, {len(self.vocabulary)} tags{only}{opened}, "
                f"{self.precision.name} on {self.device})")

    @property
    def config(self):  # -> ModelConfig
        return self.model.config

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """``(3, S, S)`` float32 input for one decoded (already EXIF-oriented) image."""
        return preprocess(image, self.config)

    @torch.inference_mode()
    def scores(self, batch: torch.Tensor, timings: StageTimings | None = None) -> np.ndarray:
        """Sigmoid scores ``(B, T)`` for a preprocessed batch ``(B, 3, S, S)``.

        With ``timings``, the seconds of its ``transfer``, ``backbone`` and ``head`` are added there.
        """
        with _timed(timings, "transfer", self.device):
            pixels = batch.to(device=self.device, dtype=self.precision.dtype, non_blocking=True)
        if self.precision.per_image:  # (int8) an image's scores must not depend on its neighbours
            logits = torch.cat([self._logits(self.model, one, self.open_embed, timings) for one in pixels.split(1)])
        else:
            logits = self._logits(self.model, pixels, self.open_embed, timings)
        if self.precision.overflow_retry and not bool(torch.isfinite(logits).all()):
            logits = self._without_overflow(batch, timings)
        if bool(torch.isnan(logits).any()):  # never written as "no tags": a damaged file or cache
            raise CheckpointError(self._not_numbers())
        return torch.sigmoid(logits.float()).cpu().numpy()

    def _not_numbers(self) -> str:
        from .model.cached import converted_dir

        where = (f"its converted copy in {converted_dir()}" if self.info is not None and self.info.from_cache
                 else str(self.info.path) if self.info is not None else "the weights")
        if self.open_embed is not None:
            where += ", or the embeddings of the --tags"
        return (f"the model computed scores that are not numbers (NaN): its weights are damaged ({where}); "
                "`ramtag models verify` checks the released weights, and deleting a converted copy has it made "
                "again from the .pth")

    def _logits(
        self, model: RamModel, pixels: torch.Tensor, open_embed: torch.Tensor | None,
        timings: StageTimings | None,
    ) -> torch.Tensor:
        with _timed(timings, "backbone", self.device):
            tokens = model.forward_features(pixels)
        with _timed(timings, "head", self.device):
            if open_embed is None:
                return model.forward_head(tokens, tags=self._builtin_index)
            # Tags are decoded independently, so the built-in and open-set tags can share one
            # image pass without concatenating (and copying) the 4,585-tag embedding table.
            parts = [model.forward_head(tokens, tags=self._builtin_index)] if self.builtin else []
            parts.append(model.forward_head(tokens, open_embed))
            return torch.cat(parts, dim=1)

    def _without_overflow(self, batch: torch.Tensor, timings: StageTimings | None) -> torch.Tensor:
        """Tag a batch again with a wider-range copy of the model: fp16 overflowed on it.

        fp16 is the default on CUDA because it kept scores closest to fp32 at bf16's speed, but its
        range ends at 65,504; rather than write NaN scores, the batch is redone in bf16 (fp32 where
        the device has no bf16), and later batches that overflow reuse that copy.
        """
        if self._wide is None:
            import warnings

            wide = overflow_fallback(self.device)
            warnings.warn(
                f"fp16 overflowed on a batch; it was tagged again in {wide.name} "
                f"(--precision {wide.name} avoids the retry)",
                RuntimeWarning, stacklevel=3,
            )
            self._wide = (
                copy.deepcopy(self.model).to(dtype=wide.dtype),
                self.open_embed.to(dtype=wide.dtype) if self.open_embed is not None else None,
            )
        model, open_embed = self._wide
        pixels = batch.to(device=self.device, dtype=next(model.parameters()).dtype)
        return self._logits(model, pixels, open_embed, timings)

    def with_open_set(
        self,
        vocabulary: TagVocabulary,
        label_embed: torch.Tensor,
        *,
        keep_builtin: bool,
        provenance: dict[str, Any] | None = None,
    ) -> Tagger:
        """The same model recognising open-set tags: alone, or after the built-in vocabulary.

        ``label_embed`` is ``(T, D, width)``; RAM++ re-weights the D descriptions per image, RAM
        needs D = 1. ``provenance`` is recorded in the metadata of every output.
        """
        if label_embed.dim() != 3 or label_embed.shape[-1] != self.config.text_width:
            raise UsageError(
                f"open-set label embeddings of shape {tuple(label_embed.shape)} do not fit the model: "
                f"expected (tags, descriptions, {self.config.text_width})"
            )
        if self.config.kind == "ram" and label_embed.shape[1] != 1:
            raise UsageError("RAM takes one embedding per tag; average the descriptions first")
        if self.open_embed is not None or not self.builtin:
            raise UsageError("this tagger already has open-set tags; start from the built-in one")
        combined = self.vocabulary.extend(vocabulary) if keep_builtin else vocabulary
        return self._with_tags(
            combined, open_embed=label_embed, builtin=keep_builtin,
            open_set={**(provenance or {}), "tags": list(vocabulary.tags)},
            builtin_tags=self.builtin_tags if keep_builtin else None,
        )

    def with_thresholds(self, thresholds: Sequence[float]) -> Tagger:
        """The same tagger with other thresholds: one per tag of its vocabulary, in its order."""
        if len(thresholds) != len(self.vocabulary):
            raise UsageError(f"{len(thresholds)} thresholds for {len(self.vocabulary)} tags")
        vocabulary = self.vocabulary.with_thresholds_at(range(len(self.vocabulary)), thresholds)
        return self._with_tags(vocabulary, open_embed=self.open_embed, builtin=self.builtin,
                               open_set=self.open_set, builtin_tags=self.builtin_tags)

    def only(self, names: Sequence[str] | str) -> Tagger:
        """The same model scoring only the named built-in tags, in that order (``--only-tags``).

        ``names``: a list, or one string of names separated by commas. The other tags are never
        decoded, so the tagging head's time shrinks with their number; the scores are those of a
        full pass (under int8, whose input scales span the tags decoded together, nearly). A name is
        an English tag, in any case, or a Chinese one.
        """
        if self.open_embed is not None or not self.builtin:
            raise UsageError("pick the built-in tags first, then add open-set tags")
        picked = self.vocabulary.positions(names_given(names))
        positions = [self.builtin_tags[i] for i in picked] if self.builtin_tags is not None else picked
        return self._with_tags(self.vocabulary.subset(picked), builtin_tags=positions)

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
        images: Any,
        *,
        batch_size: int | None = None,
        top_k: int | None = None,
        raise_errors: bool = False,
        ignore_orientation: bool = False,
        max_pixels: int | None = MAX_PIXELS,
    ) -> Any:
        """Tag one image (a path, an image URL, a PIL image or a uint8 numpy array: one ``TagResult``)
        or several (a list, in order). ``TagResult.all_scores`` follows ``tagger.vocabulary.tags``.

        A file that cannot be decoded gives a result with ``error`` set and no tags, and the other
        images are still tagged; with ``raise_errors`` an ``ImageDecodeError`` naming the first such
        file is raised as soon as its batch is done. ``batch_size`` defaults to the device's, as on
        the command line. ``ignore_orientation``: images as stored, as the official code reads them
        (``run --ignore-orientation``). ``max_pixels``: larger files are refused (``None``: no limit).
        """
        top_k = _whole_number("top_k", top_k, " (or None: every tag over its threshold)")
        batch_size = _whole_number("batch_size", batch_size)
        max_pixels = _whole_number("max_pixels", max_pixels, " (or None: no limit)")
        from .devices import default_batch_size
        from .engine.runner import run
        from .inputs import ImageDecodeError
        from .inputs.given import given_images, image_ref, is_one_image
        from .outputs.base import Collected

        single = is_one_image(images)
        items = [images] if single else given_images(images)
        refs = [image_ref(item, n) for n, item in enumerate(items)]

        def first_error(_number: int, records: list[Any]) -> None:
            failed = next((record for record in records if record.result is None), None) if raise_errors else None
            if failed is not None:
                raise ImageDecodeError(f"{failed.key}: {failed.error}")

        collected = Collected()
        run(refs, self, collected, batch_size=batch_size or default_batch_size(self.device), workers=0, top_k=top_k,
            upright=not ignore_orientation, max_pixels=max_pixels, on_batch=first_error)
        results = []
        for item, record in zip(items, collected.records):
            path = os.fspath(item) if isinstance(item, (str, os.PathLike)) else None  # as given, not as keyed
            if record.result is None:  # (with raise_errors, first_error raised already)
                results.append(TagResult([], [], None, None, path, None, None, record.error))
            else:
                results.append(replace(record.result, path=path, width=record.width, height=record.height))
        return results[0] if single else results

    def metadata(self) -> dict[str, Any]:
        """Provenance recorded with every output: enough to tell whether results are comparable."""
        data = {
            "ramtag_version": __version__,
            "model_kind": self.config.kind,
            "checkpoint": str(self.info.path) if self.info else None,
            "checkpoint_sha256": self.info.sha256 if self.info else None,
            "input_size": self.config.image_size,
            "precision": self.precision.name,  # resolved: never "auto"
            "vocabulary": list(self.vocabulary.tags),
            "thresholds": [round(float(t), 6) for t in self.vocabulary.thresholds],
        }
        if self.precision.bf16_recipe:  # the blocks in bf16: results of another recipe never mix
            data["bf16_recipe"] = self.precision.bf16_recipe
        if self.open_set is not None:
            data["open_set"] = self.open_set  # which tags are open-set, and from what
        if self.builtin_tags is not None:
            data["only_tags"] = True  # some of the tag list's tags (eval --calibrate names them)
        return data


@contextmanager
def _timed(timings: StageTimings | None, stage: str, device: torch.device) -> Iterator[None]:
    """Time one part of ``scores`` when asked to; nothing is added (or waited for) otherwise.

    GPUs run asynchronously, so the stage ends when the device has finished its work: without that,
    the backbone's time would show up in whichever later stage first waited for the results.
    """
    if timings is None:
        yield
        return
    start = time.perf_counter()
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
    timings.add(stage, time.perf_counter() - start)


def _whole_number(name: str, value: Any, otherwise: str = "") -> int | None:
    """``value`` as an int: None, or a whole number of at least 1 (numpy's too; not a bool), else a
    ``UsageError``."""
    try:
        number = None if value is None or isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if value is not None and (number is None or number < 1):
        raise UsageError(f"{name} {value!r}: give a whole number of at least 1{otherwise}")
    return number
