"""``eval --images``: the labelled images scored once into a Parquet file that later evals reuse.

The scores are an ordinary ``ramtag run --all-scores`` output (resumable, incremental), written by the
same runner, kept in the ramtag cache under a name made from what the scores depend on: the images
folder, the model options and the *resolved* device and precision (``auto`` on a CPU is fp32, on a GPU
fp16, and those scores are not interchangeable). Its rows are reused as a re-run of ``ramtag run``
reuses them (``outputs.rerun``): an image whose file has the size and time its row recorded keeps its
scores, a new or changed one is scored (a file that could not be read is tried again only once it
changed). When every labelled image is unchanged, the model is not even loaded.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from .errors import DefaultThresholdWarning, RamtagError, UsageError
from .groundtruth import Benchmark, GroundTruth, ImageFinder, benchmark_file

if TYPE_CHECKING:
    from .engine.job import ModelOptions
    from .inputs import ImageRef
    from .outputs.rerun import Rerun
    from .tagger import Tagger


@dataclass(frozen=True)
class Scored:
    """Where the scores are, and how many images were scored now (new or changed), or reused."""

    path: Path
    found: int  # labelled images under the folder
    scored: int  # tagged by this call
    changed: int  # of those, images whose file changed since it was scored
    reused: int  # images whose kept scores stand: their file is unchanged


def labelled_images(labels: GroundTruth, root: Path, chosen: Benchmark | None) -> list[tuple[str, Path]]:
    """The labelled images under ``root``, as (label key, file); at least one, or a usage error."""
    if not root.is_dir():
        raise UsageError(f"--images {root}: not a folder")
    suffix = chosen.image_suffix if chosen else ""
    find = ImageFinder(root)
    found = [(key, find(key, suffix)) for key in labels.images]
    present = [(key, path) for key, path in found if path is not None]
    if not present:
        raise UsageError(f"none of the {len(found)} labelled images is under {root} (e.g. {labels.images[0]!r})")
    return present


def score_images(
    present: list[tuple[str, Path]],
    root: Path,
    chosen: Benchmark | None,
    model: ModelOptions,
    *,
    scores: Path | None = None,
    rescore: bool = False,
    batch_size: int | None = None,
    workers: int | None = None,
    on_start: Callable[[int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    upright: bool = True,
) -> Scored:
    """The Parquet holding the scores of the labelled images ``present`` under ``root``
    (``labelled_images``). ``on_start`` is told how many images will be tagged, ``on_batch`` how
    many each batch had. ``upright`` False: images as stored, EXIF orientation ignored.
    """
    from .devices import resolve_device
    from .inputs import ImageRef
    from .inputs.identity import stamped
    from .precision import resolve

    device = resolve_device(model.device)
    precision = resolve(model.precision, device).name  # what the scores are made at, never "auto"
    dest = scores if scores is not None else cache_path(root, chosen, model, device.type, precision, upright)
    refs = [stamped(ImageRef(path, key)) for key, path in present]  # stamped once: checked and recorded
    if not rescore and _unchanged(dest, refs, precision, model, own=scores is None, upright=upright):
        return Scored(dest, len(refs), 0, 0, len(refs))
    tagged, changed = _tag(refs, dest, chosen, model, precision, overwrite=rescore, explicit=scores is not None,
                           batch_size=batch_size, workers=workers, on_start=on_start, on_batch=on_batch,
                           upright=upright)
    return Scored(dest, len(refs), tagged, changed, len(refs) - tagged)


def cache_path(
    root: Path, chosen: Benchmark | None, model: ModelOptions, device: str, precision: str, upright: bool = True
) -> Path:
    """One scores file per (images folder, model options, resolved device and precision, orientation)."""
    from .paths import cache_dir

    def resolved(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path is not None else None

    key = json.dumps({
        "images": str(root.resolve()), "model": model.kind, "checkpoint": resolved(model.checkpoint),
        "tag_list": resolved(model.tag_list), "device": device, "precision": precision,
        "open_set": chosen.descriptions.sha256 if chosen and chosen.descriptions else None,
        "text_encoder": model.text_encoder, **({} if upright else {"ignore_orientation": True}),
    }, sort_keys=True)
    name = chosen.name if chosen else (root.resolve().name or "images")
    return cache_dir() / "eval" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"


def _unchanged(
    dest: Path, refs: list[ImageRef], precision: str, model: ModelOptions, *, own: bool, upright: bool = True
) -> bool:
    """Whether ``dest`` is a finished scores file, made at ``precision`` and not with another
    checkpoint file or model kind than ``model`` names, with a row for every one of ``refs`` that a
    re-run onto it would keep (``RowIndex.decide``): then the model need not load. Otherwise the
    model loads and every setting is compared (``_tag``). ``own``: eval's cache, which is made again
    when it predates the files' sizes and times."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .outputs.journal import parts_dir
    from .outputs.rerun import UNCHANGED, RowIndex
    from .outputs.schema import IDENTITY_COLUMNS, read_metadata, recipe_of
    from .precision import PRECISIONS

    if not dest.is_file() or parts_dir(dest).exists():
        return False
    index = RowIndex(_rerun())
    try:
        file = pq.ParquetFile(dest)
        recorded = read_metadata(file.schema_arrow) or {}
        if recorded.get("precision") != precision or recipe_of(recorded) != PRECISIONS[precision].bf16_recipe \
                or _names_another_model(recorded, model) or bool(recorded.get("ignore_orientation")) == upright:
            return False
        names = file.schema_arrow.names
        if own and "file_size" not in names:
            return False
        columns = [name for name in ("path", "error", *IDENTITY_COLUMNS) if name in names]  # older: no stamps
        for batch in file.iter_batches(columns=columns):
            index.remember(batch)
    except (OSError, pa.ArrowException, KeyError):  # not a scores file: rebuilt or refused later
        return False
    return all(index.decide(ref) == UNCHANGED for ref in refs)


def _names_another_model(recorded: dict, model: ModelOptions) -> bool:
    """Whether the checkpoint this eval would load (``--checkpoint``, else the release in the Hugging
    Face cache) is not the one the scores were made with, by sha256 (remembered by size and time, so
    a 3 GB file is hashed once), or ``--model`` names another kind: told without loading the model.
    A release not downloaded yet counts as another (the model loads, and is compared in full)."""
    from .hashing import sha256_file
    from .model.download import cached_weights

    if model.kind is not None and recorded.get("model_kind") not in (None, model.kind):
        return True
    path = Path(model.checkpoint) if model.checkpoint is not None else cached_weights(model.kind or "ram_plus")
    try:
        return path is None or sha256_file(path) != recorded.get("checkpoint_sha256")
    except OSError:
        return True


def _rerun() -> Rerun:
    """Run's re-run rules, but an unreadable file fails again until it changes: retrying it would
    load the model on every eval."""
    from .outputs.rerun import Rerun

    return Rerun(retry_errors=False)


def _tag(
    refs: list[ImageRef], dest: Path, chosen: Benchmark | None, model: ModelOptions, precision: str,
    *, overwrite: bool, explicit: bool, batch_size: int | None, workers: int | None,
    on_start: Callable[[int], None] | None, on_batch: Callable[[int], None] | None, upright: bool = True,
) -> tuple[int, int]:
    """Score the new and changed ``refs`` into ``dest`` (all of them with ``overwrite``), as
    ``ramtag run`` would: (images tagged, of which changed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .devices import default_batch_size
    from .engine.job import ResultOptions
    from .engine.local import tagger_for
    from .engine.runner import run
    from .outputs.file import ResumableOutput
    from .outputs.rerun import CHANGED
    from .outputs.schema import differences, schema_for, settings_of
    from .model.needed import check_model_files

    check_model_files(model.checkpoint, model=model.kind, tag_list=model.tag_list, tag_list_zh=None, thresholds=None,
                      options=("--checkpoint", "--tag-list"))  # what is missing, with the options eval has
    with warnings.catch_warnings():
        # Scores for evaluation do not use the model's thresholds (--thresholds and --calibrate are
        # eval's own): a tag list without them is nothing to warn about here.
        warnings.simplefilter("ignore", DefaultThresholdWarning)
        tagger = tagger_for(replace(model, precision=precision, text_encoder=None))  # (for the benchmark's tags)
    if chosen is not None and chosen.descriptions is not None:
        tagger = _open_set_tagger(tagger, chosen, model.text_encoder)
    schema = schema_for(tagger, "en", True, ResultOptions(ignore_orientation=not upright))
    if dest.is_file() and not overwrite:
        try:
            kept = pq.ParquetFile(dest).schema_arrow
            changed = differences(settings_of(kept), settings_of(schema))
            if not explicit and "file_size" not in kept.names:  # made before scores knew their files' versions
                changed.append("no file sizes and times to tell a replaced photo by")
        except (OSError, pa.ArrowException):  # unreadable: as if made with other settings
            changed = ["the file is not readable as ramtag scores"]
        if changed and explicit:
            raise UsageError(
                f"{dest} holds scores made with other settings ({'; '.join(changed)}); pass --rescore to replace them"
            )
        overwrite = bool(changed)  # our own cache file: replace it
    dest.parent.mkdir(parents=True, exist_ok=True)
    with ResumableOutput(dest, "parquet", schema, overwrite=overwrite, rerun=_rerun()) as target:
        if on_start is not None:
            on_start(sum(target.counts(ref) for ref in refs))
        result = run(
            refs, tagger, target, batch_size=batch_size or default_batch_size(tagger.device), workers=workers,
            upright=upright, on_batch=None if on_batch is None else (lambda _number, records: on_batch(len(records))),
        )
        changed = target.tally[CHANGED]
    return result.images, changed


def open_set_module(chosen: Benchmark) -> ModuleType:
    """``ramtag.openset``, which a benchmark scored with open-set tags needs (checked up front)."""
    try:
        from . import openset
    except ImportError:
        raise RamtagError(
            f"{chosen.name} is scored with open-set tags (its LLM tag descriptions), which needs ramtag's "
            "open-set support (the ramtag.openset module); this installation does not have it"
        ) from None
    return openset


def _open_set_tagger(tagger: Tagger, chosen: Benchmark, text_encoder: str | None) -> Tagger:
    """The rare-200 protocol: its tags alone, recognised open-set from the official LLM descriptions."""
    openset = open_set_module(chosen)
    found = openset.load_open_set(
        benchmark_file(chosen.descriptions, chosen), text_encoder=text_encoder, device=str(tagger.device)
    )
    return openset.open_set_tagger(tagger, found, vocab="open", threshold=chosen.threshold)
