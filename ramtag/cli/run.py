"""``ramtag run``: tag every image under the inputs and stream the results to a file or stdout."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, Union

import typer
from rich.progress import ProgressColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..errors import UsageError

if TYPE_CHECKING:
    import pyarrow as pa

    from ..inputs import ImageRef
    from ..outputs.resume import ResumableOutput
    from ..outputs.xmp import SidecarWriter
    from ..pipeline import ImageRecord, StageTimings
    from ..tagger import Tagger
from .common import (
    BatchSizeOpt,
    DraftDecodeOpt,
    WorkersOpt,
    CheckpointOpt,
    DeviceOpt,
    ModelOpt,
    PrecisionOpt,
    TagListOpt,
    TagListZhOpt,
    ThresholdOpt,
    ThresholdsOpt,
    err_console,
    reporting_errors,
)
from .progress import ProgressReport, plural
from .scale import AddressOpt, ConcurrencyOpt, Engine, EngineOpt, GpusOpt, check_local
from .stdout import StdoutTarget
from .xmp import (
    Naming, Pending, SidecarsOnly, XmpNamingOpt, XmpOpt, XmpParentOpt, report_skipped, sidecar_writer,
)

INPUT_PANEL = "Input"
OUTPUT_PANEL = "Output"
OPEN_SET_PANEL = "Open-set tags"


class OutputFormat(str, Enum):
    parquet = "parquet"
    csv = "csv"
    jsonl = "jsonl"


class Vocab(str, Enum):
    open = "open"
    both = "both"


class Lang(str, Enum):
    en = "en"
    zh = "zh"
    both = "both"


def run_command(
    inputs: Annotated[
        Optional[list[Path]],
        typer.Argument(
            help="Folders (walked recursively), image files, tar shards (webdataset/img2dataset; "
            "'shards/{00000..00127}.tar' expanded by ramtag) and URLs (s3://, gs://, file://, ...).",
            show_default=False, path_type=str,  # str: a URL's '//' survives
        ),
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", "-o",
            help="Output file: .parquet, .csv or .jsonl. Without it, results go to stdout "
            "(a table on a terminal, JSON Lines otherwise).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    fmt: Annotated[
        Optional[OutputFormat],
        typer.Option("--format", help="Output format (default: from the --out extension).", rich_help_panel=OUTPUT_PANEL),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an existing --out file (by default a rerun adds only new images to it) "
            "and drop an unfinished run made with other settings.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    lang: Annotated[
        Lang,
        typer.Option(
            "--lang",
            help="en: English tags. zh, both: add a tags_zh column (tags stays English in files; "
            "the terminal table shows Chinese for zh, both for both).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = Lang.en,
    top_k: Annotated[
        Optional[int],
        typer.Option("--top-k", min=1, help="At most K tags per image (the best ones).", rich_help_panel=OUTPUT_PANEL),
    ] = None,
    all_scores: Annotated[
        bool,
        typer.Option("--all-scores", help="Add all_scores: one score per vocabulary tag.", rich_help_panel=OUTPUT_PANEL),
    ] = False,
    files_from: Annotated[
        Optional[str],
        typer.Option("--files-from", help="Also tag the paths listed in this file, one per line ('-': stdin).", rich_help_panel=INPUT_PANEL),
    ] = None,
    include: Annotated[
        Optional[list[str]],
        typer.Option("--include", help="Only paths matching this glob (repeatable).", rich_help_panel=INPUT_PANEL),
    ] = None,
    exclude: Annotated[
        Optional[list[str]],
        typer.Option("--exclude", help="Skip paths matching this glob (repeatable).", rich_help_panel=INPUT_PANEL),
    ] = None,
    hidden: Annotated[
        bool,
        typer.Option("--hidden", help="Also walk hidden files and folders (names starting with '.').", rich_help_panel=INPUT_PANEL),
    ] = False,
    max_pixels: Annotated[
        Optional[int],
        typer.Option("--max-pixels", min=1, help="Refuse images larger than this (default: about 179 million, a decompression-bomb guard).", rich_help_panel=INPUT_PANEL),
    ] = None,
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = None,
    save_every: Annotated[
        int,
        typer.Option("--save-every", min=1, help="Make results durable every N images (and at least every minute): what a crash can cost. With --engine ray: image files per part (a tar shard is one part).", rich_help_panel=OUTPUT_PANEL),
    ] = 1000,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress and no summary; errors only.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Report each bad image and the time spent per stage.")] = False,
    model: ModelOpt = None,  # type: ignore[assignment]  # None: the kind of --checkpoint, else ram_plus
    checkpoint: CheckpointOpt = None,
    tag_list: TagListOpt = None,
    tag_list_zh: TagListZhOpt = None,
    thresholds: ThresholdsOpt = None,
    threshold: ThresholdOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    xmp: XmpOpt = False,
    xmp_naming: XmpNamingOpt = Naming.auto,
    xmp_parent: XmpParentOpt = "ramtag",
    tags: Annotated[
        Optional[str],
        typer.Option(
            "--tags",
            help="Open-set tags: a descriptions .json (from `ramtag describe`), its embeddings "
            ".safetensors, a .txt of names, or names separated by commas (template descriptions).",
            rich_help_panel=OPEN_SET_PANEL,
        ),
    ] = None,
    vocab: Annotated[
        Vocab,
        typer.Option("--vocab", help="open: the --tags alone; both: the built-in tags and the --tags.", rich_help_panel=OPEN_SET_PANEL),
    ] = Vocab.open,
    text_encoder: Annotated[
        Optional[str],
        typer.Option(
            "--text-encoder", help="CLIP text model for --tags: Hub id or local folder "
            "(default: openai/clip-vit-base-patch16).", rich_help_panel=OPEN_SET_PANEL, show_default=False,
        ),
    ] = None,
    draft_decode: DraftDecodeOpt = False,
    engine: EngineOpt = Engine.local,
    address: AddressOpt = None,
    num_gpus_per_worker: GpusOpt = None,
    concurrency: ConcurrencyOpt = None,
) -> None:
    """Tag images and write one row per image: path, tags, scores, size, error.

    A file that cannot be read becomes a row with an error; the run goes on and exits 0.
    """
    started = time.perf_counter()
    with reporting_errors():
        if not inputs and files_from is None:
            raise UsageError("give folders or image files to tag, or --files-from LIST")
        from ..inputs import MAX_PIXELS, discover
        from ..outputs import format_for
        from ..inputs import is_plain_input
        from ..inputs.fs import is_url

        if tags is None and (vocab != Vocab.open or text_encoder is not None):
            raise UsageError("--vocab and --text-encoder go with --tags (open-set tags)")
        # A URL stays a string; a path is a Path, so its key is spelled as before (a/./b.jpg → a/b.jpg).
        inputs = [item if is_url(str(item)) else Path(item) for item in inputs or []]
        limit = MAX_PIXELS if max_pixels is None else max_pixels
        if engine == Engine.ray:
            if xmp or tags is not None:
                raise UsageError(f"{'--xmp' if xmp else '--tags'} is not available with --engine ray yet; use the local engine")
            from .scale import run_on_ray

            run_on_ray(
                discovery=dict(inputs=inputs, files_from=files_from, hidden=hidden), out=out,
                fmt=fmt.value if fmt else None, overwrite=overwrite,
                model=dict(checkpoint=str(checkpoint) if checkpoint else None, model=model,
                           tag_list=_text(tag_list), tag_list_zh=_text(tag_list_zh),
                           thresholds=_text(thresholds), threshold=threshold, device=device, precision=precision),
                job=dict(lang=lang.value, all_scores=all_scores, top_k=top_k, batch_size=batch_size,
                         workers=workers, max_pixels=limit, include=tuple(include or ()),
                         exclude=tuple(exclude or ()), hidden=hidden, draft_decode=draft_decode),
                cluster=dict(address=address, num_gpus_per_worker=num_gpus_per_worker, concurrency=concurrency),
                save_every=save_every, quiet=quiet, verbose=verbose, started=started,
            )
            return
        check_local(address, num_gpus_per_worker, concurrency)
        plain = all(is_plain_input(item) for item in inputs)  # no tar shards, no URLs
        if xmp and not plain:
            raise UsageError("--xmp writes sidecars beside image files; tar shards and URLs have none")
        if out is not None and out.is_dir():
            raise UsageError(f"{out} is a folder: the local engine writes one file (--engine ray writes a folder)")
        chosen = format_for(out, fmt.value if fmt else None) if out else (fmt.value if fmt else None)
        if out is None and chosen == "parquet":
            raise UsageError("Parquet needs a file: add --out FILE.parquet")
        report = _Report(quiet=quiet, verbose=verbose, started=started)
        discovery = dict(
            inputs=inputs, files_from=files_from, include=include or (),
            exclude=exclude or (), hidden=hidden, max_pixels=limit,
        )
        from ..tagger import load_tagger

        refs = discover(**discovery, on_error=report.skipped)  # checks the inputs exist first
        tagger = load_tagger(
            checkpoint, model=model, tag_list=tag_list, tag_list_zh=tag_list_zh,
            thresholds=thresholds, threshold=threshold, device=device, precision=precision,
        )
        if tags is not None:
            from ..openset import tagger_with_descriptions

            tagger = tagger_with_descriptions(
                tagger, tags, vocab=vocab.value, text_encoder=text_encoder, threshold=threshold
            )
        if lang != Lang.en and tagger.vocabulary.tags_zh is None:
            raise UsageError(f"--lang {lang.value} needs Chinese tag names: pass --tag-list-zh")
        schema = _schema(tagger, lang.value, all_scores, top_k, draft_decode)
        sidecars = sidecar_writer(xmp, xmp_naming, xmp_parent, {**tagger.metadata(), "top_k": top_k}, lang.value)
        if out is not None:
            from ..outputs.resume import ResumableOutput

            target = ResumableOutput(out, chosen, schema, overwrite=overwrite, save_every=save_every)
        elif sidecars is not None and fmt is None:
            target = SidecarsOnly()
        else:
            target = StdoutTarget(chosen, schema, lang.value)
        with target:
            pending = Pending(target.done, out is not None, sidecars)
            fresh = (ref for ref in (refs if sidecars is None else _files_only(refs)) if pending(ref))
            batches = dict(
                batch_size=batch_size or _default_batch_size(tagger), workers=workers, top_k=top_k,
                max_pixels=limit, draft_decode=draft_decode,
            )
            # Counting walks the inputs again: cheap for folders, not for tar shards or URLs.
            counting = None if files_from == "-" or not plain else lambda: (
                ref for ref in _countable(discovery) if pending.counted(ref)
            )
            _tag(fresh, tagger, target, schema, report, batches, counting, sidecars)
        report_skipped(pending, quiet)


class _Uncountable(Exception):
    """A tar shard or URL among listed files: counting would read it all, so there is no total."""


def _countable(discovery: dict[str, Any]) -> Iterator[ImageRef]:
    from ..inputs import ImageRef, discover_items, select

    def plain() -> Iterator[ImageRef]:
        for item in discover_items(**{key: discovery[key] for key in ("inputs", "files_from", "hidden")}):
            if not isinstance(item, ImageRef) or item.source is not None:
                raise _Uncountable
            yield item

    return select(plain(), discovery["include"], discovery["exclude"])


def _text(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _files_only(refs: Iterable[ImageRef]) -> Iterator[ImageRef]:
    """XMP sidecars go beside image files: a tar member or a URL has nowhere to put one."""
    for ref in refs:
        if ref.source is not None:
            raise UsageError(f"{ref.key}: --xmp writes sidecars beside image files; tar shards and URLs have none")
        yield ref


def _default_batch_size(tagger: Tagger) -> int:
    from ..devices import default_batch_size

    return default_batch_size(tagger.device)


def _schema(
    tagger: Tagger, lang: str, all_scores: bool, top_k: int | None, draft_decode: bool
) -> pa.Schema:
    from ..outputs import schema_for

    return schema_for(tagger, lang, all_scores, top_k, draft_decode)


def _tag(
    refs: Iterable[ImageRef],
    tagger: Tagger,
    target: Union[ResumableOutput, StdoutTarget],
    schema: pa.Schema,
    report: _Report,
    options: dict[str, Any],
    counting: Callable[[], Iterator[ImageRef]] | None,
    sidecars: SidecarWriter | None = None,
) -> None:
    """The runner: reader → model → writer, timed per stage; Ctrl-C ends it after a batch."""
    from ..outputs import to_record_batch
    from ..pipeline import StageTimings, run_batches

    timings = StageTimings()
    report.resuming(len(target.done))
    batches = run_batches(refs, tagger, timings=timings, **options)
    with _CtrlC() as ctrl_c, report:  # the bar stops before anything else is printed
        for number, records in enumerate(batches):
            with timings.timing("write"):
                if sidecars is not None:  # a sidecar that cannot be written is the image's error
                    records = sidecars.write(records)
                rows = records if sidecars is None else [r for r in records if r.key not in target.done]
                target.write(to_record_batch(rows, schema))
            report.advance(records)
            if number == 0 and counting is not None:  # only once the workers are forked
                report.count_later(counting)
            if ctrl_c.pressed:
                break
        batches.close()  # stops the workers
        if ctrl_c.pressed:
            target.save()
    if ctrl_c.pressed:
        report.interrupted(target)
        raise typer.Exit(130)
    with timings.timing("write"):
        target.finish()
    report.summary(target, timings)


class _CtrlC:
    """The first Ctrl-C lets the batch in hand finish and be saved; a second one stops at once."""

    def __init__(self) -> None:
        self.pressed = False
        self._previous = None

    def __enter__(self) -> _CtrlC:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, _signum: int, _frame: object) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        err_console.print("stopping after this batch (Ctrl-C again to stop at once)", markup=False)

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _Report(ProgressReport):
    """Everything the run says on stderr: progress, skipped folders, bad images, the summary."""

    def __init__(self, *, quiet: bool, verbose: bool, started: float) -> None:
        super().__init__(quiet=quiet, verbose=verbose, started=started)
        self.total: int | None = None

    def columns(self) -> list[ProgressColumn]:
        return [
            TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), TextColumn("[red]{task.fields[errors]}"),
        ]

    def fields(self) -> dict[str, Any]:
        return {"total": None}

    def skipped(self, path: Path, why: str) -> None:
        if not self.quiet:
            self.say(f"warning: {path}: {why}")

    def advance(self, records: Iterable[ImageRecord]) -> None:
        for record in records:
            self.images += 1
            if record.error is not None:
                self.errors += 1
                if self.verbose:
                    self.say(f"{record.key}: {record.error}")
        of = f"/{self.total}" if self.total is not None else ""
        self.show(
            f"{self.images}{of} images, {self.rate():.1f} images/s, {self.errors} errors",
            completed=self.images, total=self.total,
        )

    def count_later(self, refs: Callable[[], Iterator[ImageRef]]) -> None:
        """Count the images in the background; the bar gets a total when the walk is done."""
        if self.quiet:
            return

        def count() -> None:
            try:
                self.total = sum(1 for _ in refs())
            except _Uncountable:
                pass

        threading.Thread(target=count, name="ramtag-count", daemon=True).start()

    def resuming(self, done: int) -> None:
        if done and not self.quiet:
            self.say(f"skipping {plural(done, 'image')} already tagged (--overwrite redoes them)")

    def interrupted(self, target: Union[ResumableOutput, StdoutTarget]) -> None:
        if target.dest is None:
            self.say("interrupted")
            return
        self.say(
            f"interrupted: {plural(target.saved_rows, 'image')} saved in {target.folder}; "
            "run the same command again to continue"
        )

    def summary(self, target: Union[ResumableOutput, StdoutTarget], timings: StageTimings) -> None:
        if self.quiet:
            return
        where = f" → {target.dest}" if target.dest is not None else ""
        self.say(
            f"{plural(self.images, 'image')}: {self.images - self.errors} tagged, {self.errors} errors "
            f"in {self.elapsed():.1f} s ({self.rate():.1f} images/s){where}"
        )
        if self.verbose:
            split = ", ".join(f"{name} {value:.2f} s" for name, value in timings.model_stages().items())
            stages = ", ".join(
                f"{name} {value:.2f} s" + (f" ({split})" if name == "model" else "")
                for name, value in timings.stages().items()
            )
            self.say(f"time per stage: {stages}")
