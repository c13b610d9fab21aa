"""``ramtag eval``: the paper's metrics for a ramtag output (or a fresh run) against labelled images.

The command is a thin wrapper over ``ramtag.evaluation``: ``evaluate`` returns an ``Evaluation``
(numbers and counts), this module prints it. With ``--images`` the model scores the labelled images
first (``ramtag.scoring``: the runner every command uses, into a Parquet file kept in the ramtag cache),
so a second eval with other thresholds reads the scores, running the model only on the photos added
or changed since.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import UsageError
from ..engine.job import ModelOptions, check_model_options
from ..model.registry import BENCHMARKS, benchmark
from .common import (
    MODEL_PANEL, BatchSizeOpt, CheckpointOpt, DeviceOpt, IgnoreOrientationOpt, ModelOpt, PrecisionOpt, TagListOpt, WorkersOpt,
    err_console,
    path_text,
    plural,
)

if TYPE_CHECKING:
    from ..evaluation import Evaluation
    from ..groundtruth import GroundTruth
    from ..model.registry import Benchmark
    from ..scoring import Scored


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
    "--gt-classes", dir_okay=False, rich_help_panel=LABELS,
    help="The labels' classes, one per line (needed by numbered labels; default: the tags the labels use). "
    "Not --tag-list, the model's vocabulary.",
)]
OldTaglistOpt = Annotated[Optional[Path], typer.Option(
    "--taglist", dir_okay=False, hidden=True, help="Old name of --gt-classes.",
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
    help="Per-tag thresholds for CP/CR/OP/OR, one per line in vocabulary order (or named, as --calibrate writes them).",
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
TextEncoderOpt = Annotated[Optional[str], typer.Option(
    "--text-encoder", rich_help_panel=MODEL_PANEL,
    help="CLIP text model embedding open-set tags (openimages_rare_200): Hugging Face id or local folder.",
)]


def eval_command(
    gt: GtOpt = None,
    bench: BenchmarkOpt = None,
    taglist: TaglistOpt = None,
    old_taglist: OldTaglistOpt = None,
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
    ignore_orientation: IgnoreOrientationOpt = False,
    text_encoder: TextEncoderOpt = None,
) -> None:
    """Score tags against labels: mAP (official and over classes with positives), CP/CR/CF1, OP/OR/OF1."""
    # imported when the command runs, not with the command line: --help and option errors stay fast
    from ..evaluation import evaluate, protocol_threshold, read_labels, write_per_class
    from ..scoring import open_set_module

    taglist = old_taglist if old_taglist is not None else taglist
    check_model_options(device, precision, ("--gt", gt), ("--gt-classes", taglist), ("--pred", pred),
                        ("--thresholds", thresholds), ("--checkpoint", checkpoint), ("--tag-list", tag_list))
    if (gt is None) == (bench is None):
        raise UsageError("give the labels: --gt FILE or --benchmark NAME (one of them)")
    if (pred is None) == (images is None):
        raise UsageError("give the scores: --pred FILE (from `ramtag run --all-scores`) or --images DIR (one of them)")
    if target_precision is not None and calibrate is None:
        raise UsageError("--target-precision chooses --calibrate thresholds: add --calibrate FILE")
    if ignore_orientation and images is None:
        raise UsageError("--ignore-orientation is how --images are read; scores given with --pred were read already")
    _check_reports([("--per-class", per_class, _is_per_class, "a per-class CSV"),
                    ("--calibrate", calibrate, _is_thresholds, "a thresholds file")],
                   [("--gt", gt), ("--gt-classes", taglist), ("--pred", pred), ("--scores", scores),
                    ("--thresholds", thresholds)])
    chosen = benchmark(bench.value) if bench is not None else None
    if chosen is not None and chosen.descriptions is not None and images is not None:
        open_set_module(chosen)  # before any download or model load
    labels = read_labels(gt, chosen, taglist, label_format.value)
    if images is not None:
        options = ModelOptions(kind=model, checkpoint=path_text(checkpoint), tag_list=path_text(tag_list), device=device,
                               precision=precision, text_encoder=text_encoder)
        pred = _scored(labels, images, chosen, options, scores, rescore, quiet, batch_size, workers,
                       upright=not ignore_orientation)
    result = evaluate(
        labels, pred, threshold=protocol_threshold(threshold, thresholds, chosen),
        thresholds=thresholds, calibrate=calibrate, target_precision=target_precision,
        ignore_case=chosen is None and taglist is None,  # a benchmark's or class list's: exactly, as officially
    )
    if per_class is not None:
        write_per_class(per_class, result.per_class)
    if as_json:
        typer.echo(json.dumps(result.as_json(), ensure_ascii=False))
    else:
        _print(result, Console(highlight=False))
    if not quiet:
        _warn(result, scored_here=images is not None)


def _check_reports(reports: list[tuple[str, Path | None, Callable[[Path], bool], str]],
                   inputs: list[tuple[str, Path | None]]) -> None:
    """What --per-class and --calibrate write replaces a file: never one this command reads, nor an
    existing file of another kind (labels, a Parquet of scores); checked before any work."""
    written: dict[Path, str] = {}
    for option, dest, is_kind, kind in reports:
        if dest is None:
            continue
        if dest.resolve() in written:
            raise UsageError(f"{written[dest.resolve()]} and {option} name one file, {dest}: give each its own")
        written[dest.resolve()] = option
        for name, given in inputs:  # --scores may not exist yet: this command writes it first
            if given is not None and (dest.resolve() == given.resolve() or
                                      (given.exists() and dest.exists() and dest.samefile(given))):
                raise UsageError(f"{option} {dest} is also this command's {name}: writing it would replace what it "
                                 "reads; name another file")
        if dest.is_file() and not is_kind(dest):
            raise UsageError(f"{option} {dest} exists and is not {kind}, which is what would replace it; "
                             "name another file, or delete that one first")


def _is_per_class(path: Path) -> bool:
    from ..evaluation import PER_CLASS_COLUMNS

    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            first = handle.readline().strip()
        return first in ("", ",".join(PER_CLASS_COLUMNS))  # empty (touch, mktemp), or one of ours
    except OSError:
        return True  # not readable: writing says why


def _is_thresholds(path: Path) -> bool:
    from ..errors import VocabularyError
    from ..model.labels import read_named_thresholds, read_thresholds

    try:
        if path.stat().st_size > 16 << 20:
            return False
        if read_named_thresholds(path) is None:
            read_thresholds(path)
    except VocabularyError:
        return False
    except OSError:
        return True
    return True


# --- running the model on the labelled images ------------------------------------------------


def _scored(
    labels: GroundTruth, root: Path, chosen: Benchmark | None, options: ModelOptions,
    scores: Path | None, rescore: bool, quiet: bool, batch_size: int | None, workers: int | None,
    *, upright: bool = True,
) -> Path:
    """The scores of the labelled images (``scoring``), with a progress bar and what it did."""
    from ..scoring import labelled_images, score_images

    present = labelled_images(labels, root, chosen)
    if not quiet and len(present) < len(labels.images):
        err_console.print(f"{_are(len(labels.images) - len(present), 'labelled image')} not under {root}; left out",
                          markup=False, soft_wrap=True)
    progress = _Progress(quiet)
    try:
        done = score_images(present, root, chosen, options, scores=scores, rescore=rescore, batch_size=batch_size,
                            workers=workers, on_start=progress.start, on_batch=progress.advance, upright=upright)
    finally:
        progress.stop()
    if not quiet:
        err_console.print(_scoring_summary(done), markup=False, soft_wrap=True)
    return done.path


def _scoring_summary(done: Scored) -> str:
    """``2 images scored (1 new, 1 changed); scores of 3 images reused from PATH``: what was scored
    again shows, so a replaced photo's old scores are never used unnoticed."""
    said = []
    if done.scored:
        new = done.scored - done.changed
        kinds = [f"{new} new" if new else "", f"{done.changed} changed" if done.changed else ""]
        detail = f" ({', '.join(kind for kind in kinds if kind)})" if done.reused or done.changed else ""
        said.append(f"{plural(done.scored, 'image')} scored{detail}")
    if done.reused:
        said.append(f"scores of {plural(done.reused, 'image')} reused from {done.path}")
    return "; ".join(said) or "no image to score"


class _Progress:
    """A bar on stderr while the model scores images (only on a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def start(self, total: int) -> None:
        if not self.quiet and total and err_console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                console=err_console, transient=True)
            self.task = self.bar.add_task("scoring", total=total)
            self.bar.start()

    def advance(self, images: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, images)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


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
    made = result.scores
    recipe = f" ({made['bf16_recipe']} in bf16)" if made.get("bf16_recipe") else ""
    model = f"scores: {made.get('model_kind') or '?'} {made.get('precision') or '?'}{recipe}, checkpoint sha256 " \
        f"{str(made.get('checkpoint_sha256') or '?')[:12]}; "
    console.print(
        f"{plural(counts['images_evaluated'], 'image')} evaluated of {counts['images_labelled']} labelled; "
        f"{escape(model)}thresholds: {escape(result.thresholds_from)}",
        soft_wrap=True,
    )
    if result.calibration is not None:
        c = result.calibration
        console.print(
            f"calibrated ({escape(c['rule'])}): {c['calibrated']} of {c['tags']} tags → {escape(c['file'])} "
            "(one per tag of the scores: `ramtag run --thresholds` with the same tags takes it)",
            soft_wrap=True,
        )


def _warn(result: Evaluation, scored_here: bool) -> None:
    """What was left out, on stderr: never silently."""
    counts = result.counts

    def say(text: str) -> None:
        err_console.print(f"warning: {text}", markup=False, soft_wrap=True)

    if result.uniform_run_threshold is not None:  # CP/CR/OP/OR at one threshold for every tag, maybe unchosen
        say(f"the run that made the scores used {result.uniform_run_threshold:g} for every tag, so CP, CR, OP and OR "
            "are at it; per-tag thresholds are --thresholds FILE (the official ram_tag_list_threshold.txt for "
            "the official list), another one --threshold T")
    for note in result.threshold_notes:
        say(note)
    if result.unknown_classes:
        from ..evaluation import comma_joined

        joined = comma_joined(result.unknown_classes)
        name = repr if joined else str  # names with commas, in a list joined by commas: quoted apart
        why = ("not among the tags these scores have (from a run with --only-tags or --tags)" if result.some_tags
               else "not being tags of the model")
        hint = f" (one label {joined!r}: the tags of a labels cell are joined by '|')" if joined else ""
        clash = [c for c in result.unknown_classes if c in result.case_clash]
        plain = [c for c in result.unknown_classes if c not in result.case_clash]
        if plain:
            shown = ", ".join(name(n) for n in plain[:5]) + (" …" if len(plain) > 5 else "")
            say(f"{_were(len(plain), 'class', 'es')} left out, {why}: {shown}{hint}")
        if clash:
            say(f"{_were(len(clash), 'class', 'es')} left out, each matching two tags that differ only in case, or a "
                f"tag another class has: {', '.join(name(n) for n in clash[:5])}; write them as the tags are spelt")
    if result.unknown_labels:
        shown = ", ".join(result.unknown_labels[:5]) + (" …" if len(result.unknown_labels) > 5 else "")
        say(f"{_were(counts['labels_naming_no_class'], 'label')} ignored, naming no class of the taglist: {shown}")
    if counts["images_without_prediction"]:
        say(f"{plural(counts['images_without_prediction'], 'labelled image')} without scores (e.g. {result.missing_examples[0]})")
    if counts["images_ambiguous"]:
        from ..evaluation import ambiguity

        count = counts["images_ambiguous"]
        say(f"{_were(count, 'labelled image')} left out: {'' if count == 1 else 'e.g. '}"
            f"{ambiguity(result.ambiguous_examples[0])}")
    if counts["images_failed"]:
        them = "it" if counts["images_failed"] == 1 else "them"
        path, error = result.failed_example or ("?", "?")
        again = "; scored again once the file changes, or with --rescore" if scored_here else ""
        say(f"{_were(counts['images_failed'], 'labelled image')} left out, the run could not read {them} "
            f"(e.g. {path}: {error}){again}")
    if counts["predictions_without_labels"]:
        say(f"{_were(counts['predictions_without_labels'], 'scored image')} ignored, having no labels")
    if counts["repeated_label_lines"]:
        say(f"{plural(counts['repeated_label_lines'], 'label line')} repeating an image: labels merged")
    if result.calibration is not None and result.calibration["kept_unreachable"]:
        say(f"{plural(result.calibration['kept_unreachable'], 'tag')} never reaching the target precision kept their threshold")


def _are(count: int, noun: str, ending: str = "s") -> str:
    """``1 image is``, ``2 images are``."""
    return f"{plural(count, noun, ending)} {'is' if count == 1 else 'are'}"


def _were(count: int, noun: str, ending: str = "s") -> str:
    """``1 image was``, ``2 images were``."""
    return f"{plural(count, noun, ending)} {'was' if count == 1 else 'were'}"
