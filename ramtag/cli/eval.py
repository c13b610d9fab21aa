"""``ramtag eval``: the paper's metrics for a ramtag output (or a fresh run) against labelled images.

The command is a thin wrapper: ``evaluate`` returns an ``Evaluation`` (numbers and counts), the
rest prints it. With ``--images`` the model scores the labelled images first, into an ordinary
``ramtag run --all-scores`` Parquet file (resumable, incremental) kept in the ramtag cache, so a
second eval with other thresholds reads the scores instead of running the model again.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Optional

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .. import metrics
from ..errors import OutputError, RamtagError, UsageError
from ..groundtruth import (
    BENCHMARKS,
    Benchmark,
    GroundTruth,
    ImageFinder,
    align,
    benchmark,
    benchmark_file,
    match_vocabulary,
    read_ground_truth,
    read_taglist,
)
from .common import (
    MODEL_PANEL, CheckpointOpt, DeviceOpt, ModelOpt, PrecisionOpt, TagListOpt, err_console, reporting_errors,
)

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from ..tagger import Tagger

_READ_ROWS = 1024  # all_scores rows per read: 1024 x 4,585 floats is 19 MB


class LabelFormat(str, Enum):
    auto = "auto"
    csv = "csv"
    openimages = "openimages"
    indices = "indices"


BenchmarkName = Enum("BenchmarkName", {name: name for name in BENCHMARKS}, type=str)  # type: ignore[misc]

LABELS, SCORES, REPORT = "Labels", "Scores", "Report"
GtOpt = Annotated[Optional[Path], typer.Option(
    "--gt", dir_okay=False, rich_help_panel=LABELS,
    help="Labels: a CSV with path,tags (tags joined by '|'), or a file in an official benchmark format.",
)]
BenchmarkOpt = Annotated[Optional[BenchmarkName], typer.Option(
    "--benchmark", rich_help_panel=LABELS,
    help="One of the paper's test sets, its labels downloaded; with --images (or --pred).",
)]
TaglistOpt = Annotated[Optional[Path], typer.Option(
    "--taglist", dir_okay=False, rich_help_panel=LABELS,
    help="The classes, one per line (needed by numbered labels; default: the tags the labels use).",
)]
FormatOpt = Annotated[LabelFormat, typer.Option(
    "--gt-format", rich_help_panel=LABELS, help="Format of --gt (auto: told from its content).",
)]
PredOpt = Annotated[Optional[Path], typer.Option(
    "--pred", dir_okay=False, rich_help_panel=SCORES, help="A Parquet file written by `ramtag run --all-scores`.",
)]
ImagesOpt = Annotated[Optional[Path], typer.Option(
    "--images", file_okay=False, rich_help_panel=SCORES, help="The labelled images' folder: run the model on them first.",
)]
ScoresOpt = Annotated[Optional[Path], typer.Option(
    "--scores", dir_okay=False, rich_help_panel=SCORES,
    help="Where --images keeps the scores for the next eval (default: a file in the ramtag cache).",
)]
RescoreOpt = Annotated[bool, typer.Option(
    "--rescore", rich_help_panel=SCORES, help="Run the model again even where scores are kept.",
)]
EvalThresholdOpt = Annotated[Optional[float], typer.Option(
    "--threshold", min=0.0, max=1.0, rich_help_panel=REPORT,
    help="One threshold for CP/CR/OP/OR (default: the run's thresholds).",
)]
EvalThresholdsOpt = Annotated[Optional[Path], typer.Option(
    "--thresholds", dir_okay=False, rich_help_panel=REPORT,
    help="Per-tag thresholds for CP/CR/OP/OR, one per line in vocabulary order.",
)]
PerClassOpt = Annotated[Optional[Path], typer.Option(
    "--per-class", dir_okay=False, rich_help_panel=REPORT, help="Write each class's AP, precision and recall to this CSV.",
)]
CalibrateOpt = Annotated[Optional[Path], typer.Option(
    "--calibrate", dir_okay=False, rich_help_panel=REPORT,
    help="Write per-tag thresholds chosen on these labels, for `ramtag run --thresholds`.",
)]
TargetPrecisionOpt = Annotated[Optional[float], typer.Option(
    "--target-precision", min=0.0, max=1.0, rich_help_panel=REPORT,
    help="With --calibrate: the lowest threshold reaching this precision, instead of the best F1.",
)]
JsonOpt = Annotated[bool, typer.Option("--json", rich_help_panel=REPORT, help="Print one JSON object instead of a table.")]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", min=1, rich_help_panel=SCORES, help="Images per model call.")]
TextEncoderOpt = Annotated[Optional[str], typer.Option(
    "--text-encoder", rich_help_panel=MODEL_PANEL,
    help="CLIP text model embedding open-set tags (openimages_rare_200): Hugging Face id or local folder.",
)]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", min=0, rich_help_panel=SCORES, help="Decoding processes.")]


@dataclass(frozen=True)
class ModelOptions:
    """How ``--images`` runs the model (thresholds are eval's business, never the run's)."""

    model: str | None = None
    checkpoint: Path | None = None
    tag_list: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 8
    workers: int | None = None
    text_encoder: str | None = None  # for open-set tags; None: open-set's default CLIP


@dataclass
class Evaluation:
    """What an eval found: the summary metrics, the per-class details and the counts behind them."""

    summary: dict[str, float]
    per_class: list[dict[str, Any]]
    counts: dict[str, int]
    thresholds_from: str
    predictions: str
    unknown_classes: list[str] = field(default_factory=list)
    unknown_labels: list[str] = field(default_factory=list)
    missing_examples: list[str] = field(default_factory=list)
    calibration: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            **self.summary,
            "thresholds": self.thresholds_from,
            "predictions": self.predictions,
            "counts": self.counts,
            "unknown_classes": self.unknown_classes,
            "unknown_labels": self.unknown_labels,
            "images_without_prediction_examples": self.missing_examples,
            "calibration": self.calibration,
            "per_class": self.per_class,
        }


def eval_command(
    gt: GtOpt = None,
    bench: BenchmarkOpt = None,
    taglist: TaglistOpt = None,
    label_format: FormatOpt = LabelFormat.auto,
    pred: PredOpt = None,
    images: ImagesOpt = None,
    scores: ScoresOpt = None,
    rescore: RescoreOpt = False,
    threshold: EvalThresholdOpt = None,
    thresholds: EvalThresholdsOpt = None,
    per_class: PerClassOpt = None,
    calibrate: CalibrateOpt = None,
    target_precision: TargetPrecisionOpt = None,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no warnings; errors only.")] = False,
    batch_size: BatchSizeOpt = 8,
    workers: WorkersOpt = None,
    model: ModelOpt = None,  # type: ignore[assignment]
    checkpoint: CheckpointOpt = None,
    tag_list: TagListOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    text_encoder: TextEncoderOpt = None,
) -> None:
    """Score tags against labels: mAP (official and over classes with positives), CP/CR/CF1, OP/OR/OF1."""
    with reporting_errors():
        if (gt is None) == (bench is None):
            raise UsageError("give the labels: --gt FILE or --benchmark NAME (one of them)")
        if (pred is None) == (images is None):
            raise UsageError("give the scores: --pred FILE (from `ramtag run --all-scores`) or --images DIR (one of them)")
        if target_precision is not None and calibrate is None:
            raise UsageError("--target-precision chooses --calibrate thresholds: add --calibrate FILE")
        chosen = benchmark(bench.value) if bench is not None else None
        if chosen is not None and chosen.descriptions is not None and images is not None:
            _open_set_module(chosen)  # before any download or model load
        labels = _labels(gt, chosen, taglist, label_format.value)
        if images is not None:
            options = ModelOptions(model, checkpoint, tag_list, device, precision, batch_size, workers, text_encoder)
            pred = _scored(labels, images, chosen, options, scores, rescore, quiet)
        result = evaluate(
            labels, pred, threshold=_protocol_threshold(threshold, thresholds, chosen),
            thresholds=thresholds, calibrate=calibrate, target_precision=target_precision,
        )
        if per_class is not None:
            _write_per_class(per_class, result.per_class)
    if as_json:
        typer.echo(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        _print(result, Console(highlight=False))
    if not quiet:
        _warn(result)


def _protocol_threshold(threshold: float | None, thresholds: Path | None, chosen: Benchmark | None) -> float | None:
    """The user's threshold, else the benchmark's own (rare-200: 0.5) unless a thresholds file is given."""
    if threshold is not None or thresholds is not None or chosen is None:
        return threshold
    return chosen.threshold


def _labels(gt: Path | None, chosen: Benchmark | None, taglist: Path | None, dialect: str) -> GroundTruth:
    if chosen is not None:
        names = read_taglist(benchmark_file(chosen.taglist))
        return read_ground_truth(benchmark_file(chosen.annotations), taglist=names, dialect=chosen.dialect)
    names = read_taglist(taglist) if taglist is not None else None
    return read_ground_truth(gt, taglist=names, dialect=dialect)


# --- evaluation ----------------------------------------------------------------------------


def evaluate(
    labels: GroundTruth,
    pred: Path,
    *,
    threshold: float | None = None,
    thresholds: Path | None = None,
    calibrate: Path | None = None,
    target_precision: float | None = None,
) -> Evaluation:
    """Read the scores of the labelled classes from ``pred`` and compute every metric."""
    file = _open_scores(pred)
    vocabulary, run_thresholds = _run_settings(file, pred)
    match = match_vocabulary(labels.classes, vocabulary)
    if match.classes.size == 0:
        raise RamtagError(
            f"none of the {len(labels.classes)} classes of the labels is a tag of the model that wrote {pred} "
            f"(e.g. {labels.classes[0]!r}); check the taglist or the model's vocabulary" if labels.classes
            else "the labels name no class at all"
        )
    columns = np.unique(match.vocabulary_index)
    keys, failed, table = _read_columns(file, columns)
    paired = align(labels.images, keys)
    ok = ~failed[paired.predicted_rows]
    rows, pred_rows = paired.labelled_rows[ok], paired.predicted_rows[ok]
    if rows.size == 0:
        example = f" (labels name {labels.images[0]!r}, {pred} has {keys[0]!r})" if labels.images and keys else ""
        raise RamtagError(f"no labelled image has scores in {pred}{example}: are the labels for these images?")
    where = np.searchsorted(columns, match.vocabulary_index)
    class_scores = table[pred_rows][:, where]
    targets = labels.targets(rows, match.classes)

    in_use, thresholds_from = _thresholds(vocabulary, run_thresholds, threshold, thresholds)
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
                "threshold": float(class_thresholds[i]),
            }
            for i, (c, v) in enumerate(zip(match.classes, match.vocabulary_index))
        ],
        counts={
            "images_labelled": len(labels.images),
            "images_evaluated": int(rows.size),
            "images_without_prediction": len(paired.missing),
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
        predictions=str(pred),
        unknown_classes=list(match.unknown),
        unknown_labels=sorted(labels.unknown_labels),
        missing_examples=list(paired.missing[:5]),
    )
    if calibrate is not None:
        result.calibration = _calibrate(
            calibrate, table[pred_rows], columns, targets, match.vocabulary_index, in_use, target_precision
        )
    return result


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


def _run_settings(file: pq.ParquetFile, pred: Path) -> tuple[list[str], np.ndarray | None]:
    from ..outputs import read_metadata

    metadata = read_metadata(file.schema_arrow) or {}
    vocabulary = metadata.get("vocabulary")
    size = file.schema_arrow.field("all_scores").type.list_size
    if not isinstance(vocabulary, list) or len(vocabulary) != size:
        raise UsageError(f"{pred} does not record the vocabulary of its all_scores: was it written by `ramtag run`?")
    found = metadata.get("thresholds")
    run_thresholds = np.asarray(found, dtype=np.float32) if isinstance(found, list) and len(found) == size else None
    return vocabulary, run_thresholds


def _read_columns(file: pq.ParquetFile, columns: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every row's path, whether it failed, and its scores for the vocabulary ``columns`` only."""
    size = file.schema_arrow.field("all_scores").type.list_size
    keys: list[str] = []
    failed: list[np.ndarray] = []
    parts: list[np.ndarray] = []
    for batch in file.iter_batches(batch_size=_READ_ROWS, columns=["path", "error", "all_scores"]):
        keys += batch.column("path").to_pylist()
        scored = batch.column("all_scores")
        failed.append(batch.column("error").is_valid().to_numpy(zero_copy_only=False)
                      | scored.is_null().to_numpy(zero_copy_only=False))
        values = scored.values.slice(scored.offset * size, len(scored) * size).fill_null(0.0)
        parts.append(values.to_numpy(zero_copy_only=False).reshape(len(scored), size)[:, columns])
    if not parts:
        return [], np.zeros(0, dtype=bool), np.zeros((0, len(columns)), dtype=np.float32)
    return keys, np.concatenate(failed), np.concatenate(parts)


def _thresholds(
    vocabulary: Sequence[str], run: np.ndarray | None, threshold: float | None, path: Path | None
) -> tuple[np.ndarray, str]:
    from ..model.labels import DEFAULT_THRESHOLD, read_thresholds

    if threshold is not None:
        return np.full(len(vocabulary), threshold, dtype=np.float32), f"{threshold:g} for every tag"
    if path is not None:
        values = read_thresholds(path)
        if len(values) > len(vocabulary):
            raise UsageError(f"{path}: {len(values)} thresholds for a vocabulary of {len(vocabulary)} tags")
        out = np.full(len(vocabulary), DEFAULT_THRESHOLD, dtype=np.float32)
        out[: len(values)] = values
        return out, str(path)
    if run is not None:
        return run, "the run's"
    return np.full(len(vocabulary), DEFAULT_THRESHOLD, dtype=np.float32), f"{DEFAULT_THRESHOLD:g} for every tag"


def _calibrate(
    dest: Path,
    table: np.ndarray,
    columns: np.ndarray,
    targets: np.ndarray,
    vocabulary_index: np.ndarray,
    in_use: np.ndarray,
    target_precision: float | None,
) -> dict[str, Any]:
    """Thresholds per vocabulary tag; a tag several classes map to is positive where any of them is."""
    tag_targets = np.zeros(table.shape, dtype=bool)
    for j, column in enumerate(np.searchsorted(columns, vocabulary_index)):
        tag_targets[:, column] |= targets[:, j]
    chosen = metrics.calibrate(table, tag_targets, in_use[columns], target_precision=target_precision)
    full = in_use.copy()
    full[columns] = chosen.thresholds
    text = "".join(np.format_float_positional(np.float32(t), unique=True, trim="0") + "\n" for t in full)
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
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{dest}: cannot write it ({exc.strerror or exc})") from None


def _write_per_class(dest: Path, rows: list[dict[str, Any]]) -> None:
    import io

    names = ["tag", "class_index", "vocabulary_index", "positives", "AP", "precision", "recall", "threshold"]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _write_text(dest, buffer.getvalue())


# --- running the model on the labelled images ------------------------------------------------


def _scored(
    labels: GroundTruth, root: Path, chosen: Benchmark | None, options: ModelOptions,
    scores: Path | None, rescore: bool, quiet: bool,
) -> Path:
    """The Parquet holding the scores of every labelled image found under ``root``."""
    if not root.is_dir():
        raise UsageError(f"--images {root}: not a folder")
    suffix = chosen.image_suffix if chosen else ""
    find = ImageFinder(root)
    found = [(key, find(key, suffix)) for key in labels.images]
    present = [(key, path) for key, path in found if path is not None]
    if not present:
        raise UsageError(f"none of the {len(found)} labelled images is under {root} (e.g. {labels.images[0]!r})")
    if not quiet and len(present) < len(found):
        err_console.print(f"{len(found) - len(present)} labelled images are not under {root}; they are left out",
                          markup=False, soft_wrap=True)
    dest = scores if scores is not None else _cache_path(root, chosen, options)
    if not rescore and _complete(dest, [key for key, _ in present]):
        if not quiet:
            err_console.print(f"scores of {len(present)} images reused from {dest}", markup=False, soft_wrap=True)
        return dest
    _run_model(present, dest, chosen, options, overwrite=rescore, explicit=scores is not None, quiet=quiet)
    return dest


def _cache_path(root: Path, chosen: Benchmark | None, options: ModelOptions) -> Path:
    """One scores file per (images folder, model options): what the scores depend on."""
    from ..paths import cache_dir

    def resolved(path: Path | None) -> str | None:
        return str(path.resolve()) if path is not None else None

    key = json.dumps({
        "images": resolved(root), "model": options.model, "checkpoint": resolved(options.checkpoint),
        "tag_list": resolved(options.tag_list), "device": options.device, "precision": options.precision,
        "open_set": chosen.descriptions.sha256 if chosen and chosen.descriptions else None,
        "text_encoder": options.text_encoder,
    }, sort_keys=True)
    name = chosen.name if chosen else (root.resolve().name or "images")
    return cache_dir() / "eval" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.parquet"


def _complete(dest: Path, keys: list[str]) -> bool:
    """Whether ``dest`` is a finished scores file that already has every one of ``keys``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..outputs.resume import parts_dir

    if not dest.is_file() or parts_dir(dest).exists():
        return False
    try:
        done = set(pq.read_table(dest, columns=["path"]).column("path").to_pylist())
    except (OSError, pa.ArrowException, KeyError):  # not a scores file: rebuilt or refused later
        return False
    return done.issuperset(keys)


def _run_model(
    present: list[tuple[str, Path]], dest: Path, chosen: Benchmark | None, options: ModelOptions,
    *, overwrite: bool, explicit: bool, quiet: bool,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..inputs import ImageRef
    from ..outputs import Layout, output_schema, to_record_batch
    from ..outputs.resume import ResumableOutput, differences, settings_of
    from ..pipeline import run_batches
    from ..tagger import load_tagger

    tagger = load_tagger(
        options.checkpoint, model=options.model, tag_list=options.tag_list,
        device=options.device, precision=options.precision,
    )
    if chosen is not None and chosen.descriptions is not None:
        tagger = _open_set_tagger(tagger, chosen, options.text_encoder)
    layout = Layout.for_lang("en", len(tagger.vocabulary), all_scores=True)
    schema = output_schema(layout, {**tagger.metadata(), "top_k": None})
    if dest.is_file() and not overwrite:
        try:
            changed = differences(settings_of(pq.ParquetFile(dest).schema_arrow), settings_of(schema))
        except (OSError, pa.ArrowException):  # unreadable: as if made with other settings
            changed = ["the file is not readable as ramtag scores"]
        if changed and explicit:
            raise UsageError(
                f"{dest} holds scores made with other settings ({'; '.join(changed)}); pass --rescore to replace them"
            )
        overwrite = bool(changed)  # our own cache file: replace it
    dest.parent.mkdir(parents=True, exist_ok=True)
    with ResumableOutput(dest, "parquet", schema, overwrite=overwrite) as target:
        fresh = [ImageRef(path, key) for key, path in present if key not in target.done]
        with _Progress(len(fresh), quiet) as progress:
            batches = run_batches(iter(fresh), tagger, batch_size=options.batch_size, workers=options.workers)
            for records in batches:
                target.write(to_record_batch(records, schema))
                progress.advance(len(records))
        target.finish()


def _open_set_module(chosen: Benchmark) -> ModuleType:
    try:
        from .. import openset
    except ImportError:
        raise RamtagError(
            f"{chosen.name} is scored with open-set tags (its LLM tag descriptions), which needs ramtag's "
            "open-set support (the ramtag.openset module); this installation does not have it"
        ) from None
    return openset


def _open_set_tagger(tagger: Tagger, chosen: Benchmark, text_encoder: str | None) -> Tagger:
    """The rare-200 protocol: its tags alone, recognised open-set from the official LLM descriptions."""
    openset = _open_set_module(chosen)
    found = openset.load_open_set(
        benchmark_file(chosen.descriptions), text_encoder=text_encoder, device=str(tagger.device)
    )
    return openset.open_set_tagger(tagger, found, vocab="open", threshold=chosen.threshold)


class _Progress:
    """A bar on stderr while the model scores images (only on a terminal)."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.bar = None
        if not quiet and total and err_console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=err_console, transient=True)
            self.task = self.bar.add_task("scoring", total=total)
        self.quiet = quiet

    def __enter__(self) -> _Progress:
        if self.bar is not None:
            self.bar.start()
        return self

    def advance(self, images: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, images)

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()
        if not self.quiet and exc_info[0] is None:
            err_console.print(f"{self.total} images scored", markup=False)


# --- printing ------------------------------------------------------------------------------


def _print(result: Evaluation, console: Console) -> None:
    table = Table("metric", "value", title=f"ramtag eval: {escape(result.predictions)}", title_justify="left")
    table.columns[1].justify = "right"
    counts = result.counts
    names = {
        "mAP": f"mAP over all {counts['classes']} classes ({counts['classes_without_positives']} without positives, AP 0)",
        "mAP_positive": f"mAP over the {counts['classes_with_positives']} classes with positives",
    }
    for key, value in result.summary.items():
        table.add_row(escape(names.get(key, key)), f"{100 * value:.2f}")
    console.print(table)
    console.print(
        f"{counts['images_evaluated']} images evaluated of {counts['images_labelled']} labelled; "
        f"thresholds: {escape(result.thresholds_from)}",
        soft_wrap=True,
    )
    if result.calibration is not None:
        c = result.calibration
        console.print(
            f"calibrated ({escape(c['rule'])}): {c['calibrated']} of {c['tags']} tags → {escape(c['file'])}",
            soft_wrap=True,
        )


def _warn(result: Evaluation) -> None:
    """What was left out, on stderr: never silently."""
    counts = result.counts

    def say(text: str) -> None:
        err_console.print(f"warning: {text}", markup=False, soft_wrap=True)

    if result.unknown_classes:
        shown = ", ".join(result.unknown_classes[:5]) + (" …" if len(result.unknown_classes) > 5 else "")
        say(f"{len(result.unknown_classes)} classes are not tags of the model and were left out: {shown}")
    if result.unknown_labels:
        shown = ", ".join(result.unknown_labels[:5]) + (" …" if len(result.unknown_labels) > 5 else "")
        say(f"{counts['labels_naming_no_class']} labels name no class of the taglist and were ignored: {shown}")
    if counts["images_without_prediction"]:
        say(f"{counts['images_without_prediction']} labelled images have no scores (e.g. {result.missing_examples[0]})")
    if counts["images_failed"]:
        say(f"{counts['images_failed']} labelled images could not be read by the run and were left out")
    if counts["predictions_without_labels"]:
        say(f"{counts['predictions_without_labels']} scored images have no labels and were ignored")
    if counts["repeated_label_lines"]:
        say(f"{counts['repeated_label_lines']} label lines repeat an image; their labels were merged")
    if result.calibration is not None and result.calibration["kept_unreachable"]:
        say(f"{result.calibration['kept_unreachable']} tags never reach the target precision and keep their threshold")
