"""``ramtag eval``'s computation: labels joined with the scores a run wrote, and every metric.

``cli/eval.py`` only gathers the options, runs the model where asked and prints; everything here
returns data or raises a ``RamtagError``, so it can be called and tested without a terminal. The
scores come from the Parquet of ``ramtag run --all-scores``: its metadata records the vocabulary and
the thresholds the run used, and only the columns of the labelled classes are read, a bounded number
of rows at a time. ``metrics`` counts; this module opens the files.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import metrics
from .atomic import write_atomically
from .model.labels import NAMED_SEPARATOR
from .text import spreadsheet_cell
from .errors import OutputError, RamtagError, UsageError
from .groundtruth import (
    Benchmark,
    GroundTruth,
    align,
    benchmark_file,
    match_vocabulary,
    read_ground_truth,
    read_taglist,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

_READ_ROWS = 1024  # all_scores rows per read: 1024 x 4,585 floats is 19 MB


@dataclass
class Evaluation:
    """What an eval found: the summary metrics, the per-class details and the counts behind them."""

    summary: dict[str, float]
    per_class: list[dict[str, Any]]
    counts: dict[str, int]
    thresholds_from: str
    predictions: str
    uniform_run_threshold: float | None = None  # the run's thresholds, when one value for every tag
    scores: dict[str, Any] = field(default_factory=dict)  # what made them (``scores_made_with``)
    unknown_classes: list[str] = field(default_factory=list)
    case_clash: list[str] = field(default_factory=list)  # of those: matching tags that differ only in case
    some_tags: bool = False  # the scores are of some tags (--only-tags, open-set): not the whole model's
    threshold_notes: list[str] = field(default_factory=list)  # a named --thresholds file's gaps
    unknown_labels: list[str] = field(default_factory=list)
    missing_examples: list[str] = field(default_factory=list)
    ambiguous_examples: list[tuple[str, tuple[str, str]]] = field(default_factory=list)  # label, two matches
    failed_example: tuple[str, str] | None = None  # a labelled image the run could not read, and why
    calibration: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary,
            "thresholds": self.thresholds_from,
            "predictions": self.predictions,
            "scores": self.scores,
            "counts": self.counts,
            "unknown_classes": self.unknown_classes,
            "unknown_labels": self.unknown_labels,
            "images_without_prediction_examples": self.missing_examples,
            "images_ambiguous_examples": [{"label": label, "matches": list(two)} for label, two in self.ambiguous_examples],
            "calibration": self.calibration,
            "per_class": self.per_class,
        }


# --- labels --------------------------------------------------------------------------------


def read_labels(gt: Path | None, chosen: Benchmark | None, taglist: Path | None, dialect: str) -> GroundTruth:
    """The labels of ``gt`` (classes from ``taglist`` when given), or of ``chosen`` from its pinned files."""
    if chosen is not None:
        names = read_taglist(benchmark_file(chosen.taglist, chosen))
        return read_ground_truth(benchmark_file(chosen.annotations, chosen), taglist=names, dialect=chosen.dialect)
    names = read_taglist(taglist) if taglist is not None else None
    return read_ground_truth(gt, taglist=names, dialect=dialect)


def _shortest(value: np.floating) -> float:
    """A float32 threshold as the shortest decimal that is it (0.55, not 0.550000011920929)."""
    return float(np.format_float_positional(np.float32(value)))


def protocol_threshold(threshold: float | None, thresholds: Path | None, chosen: Benchmark | None) -> float | None:
    """The user's threshold, else the benchmark's own (rare-200: 0.5) unless a thresholds file is given."""
    if threshold is not None or thresholds is not None or chosen is None:
        return threshold
    return chosen.threshold


# --- evaluation ----------------------------------------------------------------------------


def evaluate(
    labels: GroundTruth,
    pred: Path,
    *,
    threshold: float | None = None,
    thresholds: Path | None = None,
    calibrate: Path | None = None,
    target_precision: float | None = None,
    ignore_case: bool = False,
) -> Evaluation:
    """Read the scores of the labelled classes from ``pred`` and compute every metric.

    ``ignore_case``: a class written ``Person`` is the model's ``person`` when that is the only tag
    so spelt (``match_vocabulary``); for labels people typed, not for a benchmark's or a class list's
    classes, which the official code looks up exactly.
    """
    file = _open_scores(pred)
    vocabulary, run_thresholds, made_with, some_tags = _run_settings(file, pred)
    if ignore_case:
        labels = merge_case_variants(labels, vocabulary)
    match = match_vocabulary(labels.classes, vocabulary, ignore_case=ignore_case)
    if match.classes.size == 0:
        scored = f"among the tags scored in {pred}" if some_tags else f"a tag of the model that wrote {pred}"
        joined = comma_joined(labels.classes)
        piped = next((name for name in labels.classes if "|" in name), None)  # path,tags without its header
        hint = (f"; the tags of a labels cell are joined by '|', not as in {joined!r}" if joined else
                f"; {piped!r} was read as one class: a path,tags file needs its header line, path,tags" if piped else "")
        raise RamtagError(
            f"none of the {len(labels.classes)} classes of the labels is {scored} "
            f"(e.g. {labels.classes[0]!r}); check the taglist or the model's vocabulary{hint}" if labels.classes
            else "the labels name no class at all"
        )
    columns = np.unique(match.vocabulary_index)
    keys, failed, errors, table = _read_columns(file, columns)
    paired = align(labels.images, keys)
    ok = ~failed[paired.predicted_rows]
    rows, pred_rows = paired.labelled_rows[ok], paired.predicted_rows[ok]
    if rows.size == 0:
        if paired.ambiguous:
            raise RamtagError(f"no labelled image has scores in {pred}: {ambiguity(paired.ambiguous[0])}")
        example = f" (labels name {labels.images[0]!r}, {pred} has {keys[0]!r})" if labels.images and keys else ""
        raise RamtagError(f"no labelled image has scores in {pred}{example}: are the labels for these images?")
    where = np.searchsorted(columns, match.vocabulary_index)
    class_scores = table[pred_rows][:, where]
    targets = labels.targets(rows, match.classes)

    in_use, thresholds_from, threshold_notes = _thresholds(vocabulary, run_thresholds, threshold, thresholds)
    uniform = thresholds_from == "the run's" and len(in_use) > 1 and bool(np.all(in_use == in_use[0]))
    class_thresholds = in_use[match.vocabulary_index]
    ap = metrics.mean_average_precision(class_scores, targets)
    counts = metrics.precision_recall(metrics.predict(class_scores, class_thresholds), targets)
    result = Evaluation(
        summary={"mAP": ap.official, "mAP_positive": ap.over_positive, **counts.summary()},
        per_class=[
            {
                "tag": labels.classes[c], "class_index": int(c), "vocabulary_index": int(v),
                "positives": int(ap.positives[i]), "AP": float(ap.per_class[i]),
                "precision": float(counts.precision[i]), "recall": float(counts.recall[i]),
                "threshold": _shortest(class_thresholds[i]),
            }
            for i, (c, v) in enumerate(zip(match.classes, match.vocabulary_index))
        ],
        counts={
            "images_labelled": len(labels.images),
            "images_evaluated": int(rows.size),
            "images_without_prediction": len(paired.missing),
            "images_ambiguous": len(paired.ambiguous),
            "images_failed": int((~ok).sum()),
            "predictions_without_labels": paired.unlabelled,
            "repeated_label_lines": labels.repeated_images,
            "classes": int(match.classes.size),
            "classes_with_positives": int(match.classes.size - ap.classes_without_positives),
            "classes_without_positives": ap.classes_without_positives,
            "classes_unknown_to_model": len(match.unknown),
            "labels_naming_no_class": sum(labels.unknown_labels.values()),
        },
        thresholds_from=thresholds_from,
        uniform_run_threshold=float(in_use[0]) if uniform else None,
        predictions=str(pred),
        scores=made_with,
        some_tags=some_tags,
        threshold_notes=threshold_notes,
        unknown_classes=list(match.unknown),
        case_clash=list(match.case_clash),
        unknown_labels=sorted(labels.unknown_labels),
        missing_examples=list(paired.missing[:5]),
        failed_example=_failure(keys, errors, int(paired.predicted_rows[~ok][0])) if not ok.all() else None,
        ambiguous_examples=list(paired.ambiguous[:5]),
    )
    if calibrate is not None:
        result.calibration = _calibrate(
            calibrate, table[pred_rows], columns, targets, match.vocabulary_index, in_use, target_precision,
            names=vocabulary if some_tags else None,
        )
    return result


def ambiguity(example: tuple[str, tuple[str, str]]) -> str:
    """What to do about a label name that ends several scored paths: give more of the path."""
    label, (first, second) = example
    return (f"the label {label!r} matches several scored images ({first!r}, {second!r}); "
            f"give more of its path in the labels, such as {first!r}")


def _open_scores(pred: Path) -> pq.ParquetFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(pred)
    except FileNotFoundError:
        raise UsageError(f"{pred}: not found") from None
    except (OSError, pa.ArrowException):
        raise UsageError(
            f"{pred}: not a Parquet file; eval reads the Parquet of `ramtag run --out FILE.parquet --all-scores` "
            "(CSV and JSON Lines outputs carry no vocabulary)"
        ) from None
    if "all_scores" not in file.schema_arrow.names:
        raise UsageError(f"{pred} has no all_scores column: tag the images again with `ramtag run ... --all-scores`")
    return file


def scores_made_with(metadata: dict[str, Any]) -> dict[str, Any]:
    """What the scores came from, for the report: the model, its checkpoint and the precision."""
    return {key: metadata.get(key) for key in ("model_kind", "checkpoint_sha256", "precision", "bf16_recipe")}


def _run_settings(file: pq.ParquetFile, pred: Path) -> tuple[list[str], np.ndarray | None, dict[str, Any], bool]:
    """The vocabulary of the scores, the run's thresholds, what made them (``scores_made_with``), and
    whether they are of some tags (``--only-tags``, open-set ones)."""
    from .outputs import read_metadata

    metadata = read_metadata(file.schema_arrow) or {}
    vocabulary = metadata.get("vocabulary")
    size = file.schema_arrow.field("all_scores").type.list_size
    if not isinstance(vocabulary, list) or len(vocabulary) != size:
        raise UsageError(f"{pred} does not record the vocabulary of its all_scores: was it written by `ramtag run`?")
    found = metadata.get("thresholds")
    run_thresholds = np.asarray(found, dtype=np.float32) if isinstance(found, list) and len(found) == size else None
    some_tags = bool(metadata.get("only_tags")) or metadata.get("open_set") is not None
    return vocabulary, run_thresholds, scores_made_with(metadata), some_tags


def _read_columns(
    file: pq.ParquetFile, columns: np.ndarray
) -> tuple[list[str], np.ndarray, pa.ChunkedArray, np.ndarray]:
    """Every row's path, whether it failed, its error (kept as Arrow: mostly nulls), and its scores
    for the vocabulary ``columns`` only."""
    import pyarrow as pa

    size = file.schema_arrow.field("all_scores").type.list_size
    keys: list[str] = []
    failed: list[np.ndarray] = []
    errors: list[pa.Array] = []
    parts: list[np.ndarray] = []
    for batch in file.iter_batches(batch_size=_READ_ROWS, columns=["path", "error", "all_scores"]):
        keys += batch.column("path").to_pylist()
        scored = batch.column("all_scores")
        errors.append(batch.column("error"))
        failed.append(batch.column("error").is_valid().to_numpy(zero_copy_only=False)
                      | scored.is_null().to_numpy(zero_copy_only=False))
        values = scored.values.slice(scored.offset * size, len(scored) * size).fill_null(0.0)
        parts.append(values.to_numpy(zero_copy_only=False).reshape(len(scored), size)[:, columns])
    if not parts:
        return [], np.zeros(0, dtype=bool), pa.chunked_array([], pa.string()), np.zeros((0, len(columns)), dtype=np.float32)
    return keys, np.concatenate(failed), pa.chunked_array(errors, pa.string()), np.concatenate(parts)


def _failure(keys: list[str], errors: pa.ChunkedArray, row: int) -> tuple[str, str]:
    """A failed row's path and error, to name in the report."""
    return keys[row], errors[row].as_py() or "no scores"


def comma_joined(classes: Sequence[str]) -> str | None:
    """A class name that is several tags joined by a comma or semicolon (``dog, road``): the labels
    joined them otherwise than with ``|``."""
    return next((name for name in classes if "," in name or ";" in name), None)


def merge_case_variants(labels: GroundTruth, vocabulary: Sequence[str]) -> GroundTruth:
    """Typed labels spelling one tag two ways (``person``, ``Person``) as one class, positives of
    both (apart, each counts the other's as negatives); only where one tag alone is so spelt."""
    exact = set(vocabulary)
    folded: dict[str, list[str]] = {}
    for name in vocabulary:
        folded.setdefault(name.casefold(), []).append(name)
    groups: dict[str, list[int]] = {}
    for position, name in enumerate(labels.classes):
        tags = [name] if name in exact else folded.get(name.casefold(), [])
        if len(tags) == 1:
            groups.setdefault(tags[0], []).append(position)
    into = {}
    for tag, positions in groups.items():
        if len(positions) > 1:
            keep = next((p for p in positions if labels.classes[p] == tag), positions[0])
            into.update({p: keep for p in positions if p != keep})
    if not into:
        return labels
    kept = [p for p in range(len(labels.classes)) if p not in into]
    renumber = {p: i for i, p in enumerate(kept)}
    renumber.update({p: renumber[keep] for p, keep in into.items()})
    rows = tuple(tuple(sorted({renumber[label] for label in row})) for row in labels.labels)
    return replace(labels, classes=tuple(labels.classes[p] for p in kept), labels=rows)


def _thresholds(
    vocabulary: Sequence[str], run: np.ndarray | None, threshold: float | None, path: Path | None
) -> tuple[np.ndarray, str, list[str]]:
    """The thresholds in use, what they came from, and what a file naming its tags left out."""
    from .model.labels import DEFAULT_THRESHOLD, TagVocabulary, read_named_thresholds, read_thresholds
    from .vocabulary import named_thresholds

    if threshold is not None:
        return np.full(len(vocabulary), threshold, dtype=np.float32), f"{threshold:g} for every tag", []
    if path is not None and (named := read_named_thresholds(path)) is not None:
        if not set(named) & set(vocabulary):
            raise UsageError(f"{path} names none of the tags of these scores (it has {next(iter(named))!r}): "
                             "it is for the scores of other --only-tags or --tags")
        kept = run if run is not None else np.full(len(vocabulary), DEFAULT_THRESHOLD, dtype=np.float32)
        values, notes = named_thresholds(TagVocabulary(tuple(vocabulary), kept), named, path)
        return np.asarray(values, dtype=np.float32), str(path), [str(note) for note in notes]
    if path is not None:
        values = read_thresholds(path)
        if len(values) > len(vocabulary):
            raise UsageError(f"{path}: {len(values)} thresholds for a vocabulary of {len(vocabulary)} tags")
        out = np.full(len(vocabulary), DEFAULT_THRESHOLD, dtype=np.float32)
        out[: len(values)] = values
        return out, str(path), []
    if run is not None:
        return run, "the run's", []
    return np.full(len(vocabulary), DEFAULT_THRESHOLD, dtype=np.float32), f"{DEFAULT_THRESHOLD:g} for every tag", []


def _calibrate(
    dest: Path,
    table: np.ndarray,
    columns: np.ndarray,
    targets: np.ndarray,
    vocabulary_index: np.ndarray,
    in_use: np.ndarray,
    target_precision: float | None,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Thresholds per vocabulary tag; a tag several classes map to is positive where any of them is.
    With ``names`` (the scores were of some tags), each line names its tag, which runs apply by name:
    in the official format a run naming the same tags in another order took them by position."""
    tag_targets = np.zeros(table.shape, dtype=bool)
    for j, column in enumerate(np.searchsorted(columns, vocabulary_index)):
        tag_targets[:, column] |= targets[:, j]
    chosen = metrics.calibrate(table, tag_targets, in_use[columns], target_precision=target_precision)
    full = in_use.copy()
    full[columns] = chosen.thresholds
    text = "".join(np.format_float_positional(np.float32(t), unique=True, trim="0")
                   + (f"{NAMED_SEPARATOR}{names[i]}" if names is not None else "") + "\n" for i, t in enumerate(full))
    _write_text(dest, text)
    return {
        "file": str(dest),
        "rule": f"lowest threshold with precision >= {target_precision:g}" if target_precision is not None else "best F1",
        "tags": len(full),
        "calibrated": int(chosen.calibrated.sum()),
        "kept_without_positives": int(chosen.without_positives.sum()) + len(full) - len(columns),
        "kept_unreachable": int(chosen.unreachable.sum()),
    }


def _write_text(dest: Path, text: str) -> None:
    """Written whole or not at all: an interrupted eval never leaves half a thresholds file."""
    try:
        write_atomically(dest, text)
    except OSError as exc:
        raise OutputError(f"{dest}: cannot write it ({exc.strerror or exc})") from None


PER_CLASS_COLUMNS = ["tag", "class_index", "vocabulary_index", "positives", "AP", "precision", "recall", "threshold"]


def write_per_class(dest: Path, rows: list[dict[str, Any]]) -> None:
    """``Evaluation.per_class`` as a CSV, written whole or not at all."""
    names = PER_CLASS_COLUMNS
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: spreadsheet_cell(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows)
    _write_text(dest, buffer.getvalue())
