"""``ramtag run``: its options parsed into a ``Job``, run by an engine, and reported on stderr."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..engine.job import ClusterOptions, InputOptions, Job, ModelOptions, OutputOptions, ResultOptions, only_tag_names
from ..errors import UsageError
from ..inputs.refs import RAW_DECODES
from ..model.config import LANGS, VOCAB_MODES
from ..outputs.formats import EXTENSIONS, FORMATS
from .common import (
    BatchSizeOpt,
    CheckpointOpt,
    DeviceOpt,
    DraftDecodeOpt,
    IgnoreOrientationOpt,
    ModelOpt,
    OnlyTagsOpt,
    PrecisionOpt,
    Preprocess,
    PreprocessOpt,
    TagListOpt,
    TagListZhOpt,
    ThresholdOpt,
    ThresholdsOpt,
    WorkersOpt,
    choices,
    path_text,
)
from .scale import AddressOpt, ConcurrencyOpt, Engine, EngineOpt, GpusOpt, run_on_ray
from .xmp import EmbedOpt, Naming, TouchOpt, XmpNamingOpt, XmpOpt, XmpParentOpt

INPUT_PANEL = "Input"
OUTPUT_PANEL = "Output"
OPEN_SET_PANEL = "Open-set tags"

OutputFormat = choices("OutputFormat", FORMATS)
Lang = choices("Lang", LANGS)
Vocab = choices("Vocab", VOCAB_MODES)
RawDecode = choices("RawDecode", RAW_DECODES)


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
            help=f"Output file: {EXTENSIONS}. Without it (or with -), results go to stdout "
            "(a table on a terminal, JSON Lines otherwise).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = None,
    fmt: Annotated[
        Optional[OutputFormat],  # type: ignore[valid-type]
        typer.Option("--format", help="Output format (default: from the --out extension).", rich_help_panel=OUTPUT_PANEL),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an existing --out file (by default a rerun tags only what is new, changed "
            "or failed before) and drop an unfinished run made with other settings.",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Remove from --out the rows of files deleted from the folders given (without it they "
            "are kept, and counted).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    retry_errors: Annotated[
        bool,
        typer.Option(
            "--retry-errors/--keep-errors",
            help="A rerun tags the images of error rows again (--keep-errors leaves those rows).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = True,
    content_hash: Annotated[
        bool,
        typer.Option(
            "--content-hash",
            help="Record each file's SHA-256 and tell changed files by it on reruns, not by size and "
            "time (reads every file on every run).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = False,
    lang: Annotated[
        Lang,  # type: ignore[valid-type]
        typer.Option(
            "--lang",
            help="en: English tags. zh, both: add a tags_zh column (tags stays English in files; "
            "the terminal table shows Chinese for zh, both for both).",
            rich_help_panel=OUTPUT_PANEL,
        ),
    ] = Lang("en"),
    top_k: Annotated[
        Optional[int],
        typer.Option("--top-k", min=1, help="At most K tags per image: the K best of those over their thresholds.", rich_help_panel=OUTPUT_PANEL),
    ] = None,
    all_scores: Annotated[
        bool,
        typer.Option("--all-scores", help="Add all_scores: one score per vocabulary tag.", rich_help_panel=OUTPUT_PANEL),
    ] = False,
    files_from: Annotated[
        Optional[str],
        typer.Option("--files-from", metavar="FILE", help="Also tag the paths listed in this file, one per line or NUL-separated ('-': stdin).", rich_help_panel=INPUT_PANEL),
    ] = None,
    include: Annotated[
        Optional[list[str]],
        typer.Option("--include", metavar="GLOB", help="Only paths matching this glob, or under a folder it matches (repeatable).", rich_help_panel=INPUT_PANEL),
    ] = None,
    exclude: Annotated[
        Optional[list[str]],
        typer.Option("--exclude", metavar="GLOB", help="Skip paths matching this glob, or under a folder it matches (repeatable).", rich_help_panel=INPUT_PANEL),
    ] = None,
    hidden: Annotated[
        bool,
        typer.Option("--hidden", help="Also walk hidden files and folders (names starting with '.').", rich_help_panel=INPUT_PANEL),
    ] = False,
    max_pixels: Annotated[
        Optional[int],
        typer.Option("--max-pixels", min=1, help="Refuse images larger than this (default: about 179 million, a decompression-bomb guard).", rich_help_panel=INPUT_PANEL),
    ] = None,
    raw_decode: Annotated[
        RawDecode,  # type: ignore[valid-type]
        typer.Option(
            "--raw-decode",
            help="Camera raws (.CR2, .NEF, .ARW, .dng...): auto uses the JPEG preview inside the file "
            "when it covers the model's input, else develops the sensor data; demosaic always develops it.",
            rich_help_panel=INPUT_PANEL,
        ),
    ] = RawDecode("auto"),
    ignore_orientation: IgnoreOrientationOpt = False,
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
    only_tags: OnlyTagsOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    xmp: XmpOpt = False,
    xmp_naming: XmpNamingOpt = Naming("auto"),
    xmp_parent: XmpParentOpt = "ramtag",
    embed: EmbedOpt = False,
    touch: TouchOpt = False,
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
        Vocab,  # type: ignore[valid-type]
        typer.Option("--vocab", help="open: the --tags alone; both: the built-in tags and the --tags.", rich_help_panel=OPEN_SET_PANEL),
    ] = Vocab("open"),
    text_encoder: Annotated[
        Optional[str],
        typer.Option(
            "--text-encoder", help="CLIP text model for --tags: Hub id or local folder "
            "(default: openai/clip-vit-base-patch16).", rich_help_panel=OPEN_SET_PANEL, show_default=False,
        ),
    ] = None,
    draft_decode: DraftDecodeOpt = False,
    preprocess: PreprocessOpt = Preprocess("pillow"),
    engine: EngineOpt = Engine("local"),
    address: AddressOpt = None,
    num_gpus_per_worker: GpusOpt = None,
    concurrency: ConcurrencyOpt = None,
) -> None:
    """Tag images and write one row per image: path, tags, scores, size, error.

    A file that cannot be read becomes a row with an error; the run goes on and exits 0.
    """
    started = time.perf_counter()
    if quiet and verbose:
        raise UsageError("-q (--quiet) and -v (--verbose) ask for opposite things: give one")
    stdout = out == Path("-")  # the rows to stdout, as without --out (with --xmp or --embed too)
    if sys.stdout is None and (out is None or stdout):  # started with stdout closed (`>&-`, some daemons)
        if not (xmp or embed) or stdout or fmt is not None:  # rows asked for on stdout
            raise UsageError("stdout is closed: give --out FILE for the results")
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # the keywords are what was asked for
    job = Job(
        inputs=InputOptions(
            paths=tuple(str(item) for item in inputs or ()), files_from=files_from,
            include=tuple(include or ()), exclude=tuple(exclude or ()), hidden=hidden,
            **({} if max_pixels is None else {"max_pixels": max_pixels}),
        ),
        model=ModelOptions(
            kind=model, checkpoint=path_text(checkpoint), tag_list=path_text(tag_list), tag_list_zh=path_text(tag_list_zh),
            thresholds=path_text(thresholds), threshold=threshold, device=device, precision=precision,
            tags=tags, vocab=vocab.value, text_encoder=text_encoder,
            only_tags=only_tag_names(only_tags) if only_tags is not None else None,
        ),
        results=ResultOptions(
            top_k=top_k, draft_decode=draft_decode, raw_decode=raw_decode.value, preprocess=preprocess.value,
            ignore_orientation=ignore_orientation,
        ),
        outputs=OutputOptions(
            out=None if stdout else path_text(out), format=fmt.value if fmt else ("jsonl" if stdout and (xmp or embed) else None),
            overwrite=overwrite, save_every=save_every,
            lang=lang.value, all_scores=all_scores, xmp=xmp, xmp_naming=xmp_naming.value, xmp_parent=xmp_parent,
            embed=embed, touch=touch, retry_errors=retry_errors, prune=prune, content_hash=content_hash,
        ),
        cluster=ClusterOptions(
            engine=engine.value, address=address, num_gpus_per_worker=num_gpus_per_worker, concurrency=concurrency,
        ),
        batch_size=batch_size, workers=workers,
    )
    if engine == Engine.ray:  # each engine checks the job before anything heavy
        run_on_ray(job, quiet=quiet, verbose=verbose, started=started)
        return
    from ..engine.local import run_job
    from .report import RunReport

    report = RunReport(job, quiet=quiet, verbose=verbose, started=started)
    try:
        done = run_job(job, events=report, stop=report.stop)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, what was saved before stays
        report.stopped(report.file)
    finally:
        report.end()
    report.finished(done)
