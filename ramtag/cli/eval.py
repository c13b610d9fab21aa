"""``ramtag eval``: the paper's metrics for a ramtag output (or a fresh run) against labelled images.

The command is a thin wrapper over ``ramtag.evaluation``: ``evaluate`` returns an ``Evaluation``
(numbers and counts), this module prints it. With ``--images`` the model scores the labelled images
first, into an ordinary ``ramtag run --all-scores`` Parquet file (resumable, incremental) kept in the
ramtag cache, so a second eval with other thresholds reads the scores instead of running the model again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import RamtagError, UsageError
from ..evaluation import Evaluation, evaluate, protocol_threshold, read_labels, write_per_class
from ..groundtruth import BENCHMARKS, Benchmark, GroundTruth, ImageFinder, benchmark, benchmark_file
from .common import (
    MODEL_PANEL, CheckpointOpt, DeviceOpt, ModelOpt, PrecisionOpt, TagListOpt, err_console, reporting_errors,
)

if TYPE_CHECKING:
    from ..tagger import Tagger


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
    batch_size: int | None = None  # None: the device default
    workers: int | None = None
    text_encoder: str | None = None  # for open-set tags; None: open-set's default CLIP


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
    batch_size: BatchSizeOpt = None,
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
        labels = read_labels(gt, chosen, taglist, label_format.value)
        if images is not None:
            options = ModelOptions(model, checkpoint, tag_list, device, precision, batch_size, workers, text_encoder)
            pred = _scored(labels, images, chosen, options, scores, rescore, quiet)
        result = evaluate(
            labels, pred, threshold=protocol_threshold(threshold, thresholds, chosen),
            thresholds=thresholds, calibrate=calibrate, target_precision=target_precision,
        )
        if per_class is not None:
            write_per_class(per_class, result.per_class)
    if as_json:
        typer.echo(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        _print(result, Console(highlight=False))
    if not quiet:
        _warn(result)


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
    from ..outputs import schema_for, to_record_batch
    from ..outputs.resume import ResumableOutput, differences, settings_of
    from ..pipeline import run_batches
    from ..tagger import load_tagger

    tagger = load_tagger(
        options.checkpoint, model=options.model, tag_list=options.tag_list,
        device=options.device, precision=options.precision,
    )
    if chosen is not None and chosen.descriptions is not None:
        tagger = _open_set_tagger(tagger, chosen, options.text_encoder)
    schema = schema_for(tagger, "en", True, None)
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
            batches = run_batches(
                iter(fresh), tagger, batch_size=options.batch_size or _default_batch_size(tagger.device),
                workers=options.workers,
            )
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


def _default_batch_size(device: object) -> int:
    from ..devices import default_batch_size

    return default_batch_size(device)  # type: ignore[arg-type]
