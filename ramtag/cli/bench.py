"""``ramtag bench``: how fast this machine tags, where the time goes, and the memory it takes."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from ..engine.job import check_model_options
from ..errors import UsageError
from .common import (
    SPEED_PANEL,
    BatchSizeOpt,
    DeviceOpt,
    DraftDecodeOpt,
    PrecisionOpt,
    Preprocess,
    PreprocessOpt,
    TagListOpt,
    ThresholdsOpt,
    WorkersOpt,
    err_console,
)
from .progress import plural

if TYPE_CHECKING:
    from ..bench import BenchResult
    from ..tagger import Tagger

WEIGHTS_PANEL = "Weights"
INPUT_PANEL = "Images"
DEFAULT_SYNTHETIC = 32
STAGE_WORDS = {
    "decode": "decode+preprocess (worker time)",
    "wait": "wait for decoded batches",
    "device_decode": "decode on the device (nvJPEG)",
    "transfer": "host to device",
    "backbone": "backbone",
    "head": "re-weighting + decoder",
    "write": "write",
}


def bench_command(
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint", help="Weights file to time (official .pth or converted .safetensors).",
            dir_okay=False, rich_help_panel=WEIGHTS_PANEL,
        ),
    ] = None,
    random_weights: Annotated[
        bool,
        typer.Option(
            "--random-weights", help="Time the released architecture with random weights: no download.",
            rich_help_panel=WEIGHTS_PANEL,
        ),
    ] = False,
    config: Annotated[
        Optional[str],
        typer.Option(
            "--config", help="With --random-weights: ram_plus_swin_large_14m (default), "
            "ram_swin_large_14m, or a config .json file.", rich_help_panel=WEIGHTS_PANEL,
            show_default=False,
        ),
    ] = None,
    tag_list: TagListOpt = None,
    thresholds: ThresholdsOpt = None,
    images: Annotated[
        Optional[Path],
        typer.Option(
            "--images", help="Time on the images under this folder.", file_okay=False,
            rich_help_panel=INPUT_PANEL,
        ),
    ] = None,
    synthetic: Annotated[
        Optional[int],
        typer.Option(
            "--synthetic", min=1, help=f"Time on N generated photo-like JPEGs (default {DEFAULT_SYNTHETIC}).",
            rich_help_panel=INPUT_PANEL, show_default=False,
        ),
    ] = None,
    image_size: Annotated[
        Optional[str],
        typer.Option(
            "--image-size", help="Size of the --synthetic images, WIDTHxHEIGHT (default 1600x1200).",
            rich_help_panel=INPUT_PANEL, show_default=False,
        ),
    ] = None,
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = None,
    draft_decode: DraftDecodeOpt = False,
    preprocess: PreprocessOpt = Preprocess("pillow"),
    warmup: Annotated[
        int,
        typer.Option("--warmup", min=0, help="Batches tagged first and left out of the figures.", rich_help_panel=SPEED_PANEL),
    ] = 1,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as one JSON object.")] = False,
) -> None:
    """Time the real pipeline (decode, model, Parquet write): images/s, time per stage, memory.

    Start-up and the warm-up batches are left out. Without --tag-list, a made-up vocabulary of the model's size is used (tag names do not change the speed).
    """
    check_model_options(device, precision, ("--checkpoint", checkpoint), ("--tag-list", tag_list),
                        ("--thresholds", thresholds))
    from ..engine.job import ResultOptions, check_preprocess

    check_preprocess(ResultOptions(draft_decode=draft_decode, preprocess=preprocess.value), device)
    load = _loader(checkpoint, random_weights, config, tag_list, thresholds, device, precision)
    if images is not None and (synthetic is not None or image_size is not None):
        raise UsageError("give --images DIR or --synthetic N (with --image-size), not both")
    from ..bench import process_age_s, run_bench, write_synthetic_images

    imports = process_age_s()  # torch and timm are in: the rest of start-up is loading
    from ..devices import resolve_device
    from ..engine.job import check_preprocess_device

    check_preprocess_device(preprocess.value, resolve_device(device).type)  # before the model loads

    with tempfile.TemporaryDirectory(prefix="ramtag-bench-images-") as tmp:
        if images is None:
            count, size = synthetic or DEFAULT_SYNTHETIC, _size(image_size or "1600x1200")
            err_console.print(f"generating {count} images of {size[0]}x{size[1]}", markup=False)
            write_synthetic_images(Path(tmp), count, size, processes=os.cpu_count() or 1)
            source = f"{count} synthetic JPEGs, {size[0]}x{size[1]}"
        else:
            source = str(images)
        result = run_bench(
            load, images or Path(tmp), batch_size=batch_size or _default_batch_size(device), workers=workers, warmup=warmup,
            draft_decode=draft_decode, preprocessing=preprocess.value, imports_s=imports,
            on_status=lambda text: err_console.print(text, markup=False),
        )
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "images_from": source}, indent=2))
    else:
        _print(result, source)


def _loader(
    checkpoint: Path | None,
    random_weights: bool,
    config: str | None,
    tag_list: Path | None,
    thresholds: Path | None,
    device: str,
    precision: str,
) -> Callable[[], Tagger]:
    """Check the weights options now; the returned function does the (timed) loading later."""
    from functools import partial

    from .. import bench

    if checkpoint is not None and random_weights:
        raise UsageError("give --checkpoint FILE or --random-weights, not both")
    if thresholds is not None and tag_list is None:
        raise UsageError("--thresholds goes with --tag-list")
    if random_weights:
        model_config = bench.model_config(config or "ram_plus_swin_large_14m")
        vocabulary = None
        if tag_list is not None:
            from ..vocabulary import load_vocabulary

            vocabulary = load_vocabulary(tag_list=tag_list, thresholds=thresholds)
        return partial(
            bench.random_tagger, model_config, vocabulary=vocabulary, device=device, precision=precision
        )
    if checkpoint is None:
        raise UsageError("give --checkpoint FILE, or --random-weights to time the architecture alone")
    if config is not None:
        raise UsageError("--config goes with --random-weights (a checkpoint carries its own)")
    return partial(
        bench.checkpoint_tagger, checkpoint, tag_list=tag_list, thresholds=thresholds,
        device=device, precision=precision,
    )


def _size(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if match is None or not all(16 <= int(side) <= 16384 for side in match.groups()):
        raise UsageError(f"--image-size {text!r}: give WIDTHxHEIGHT, each 16 to 16384, e.g. 1600x1200")
    return int(match.group(1)), int(match.group(2))


def _print(result: BenchResult, source: str) -> None:
    """The figures for a person, one topic a line; --json has the same and more for a script."""
    out = Console(highlight=False)
    s, m = result.settings, result.machine
    weights = "random weights" if s["weights"] == "random" else s["weights"]
    where = m["device_name"] or m["cpu"]
    if m["device_name"] is None:  # the CPU does the model's work: its vector features matter
        bf16 = f"native bf16: {m['native_bf16']}" if m["native_bf16"] else "no native bf16"
        where += f" ({' '.join(m['cpu_flags']) or 'no AVX2, AVX-512 or AMX listed'}; {bf16})"
    out.print(
        f"{s['model']} ({weights}), {s['device']} {s['precision']}"
        f"{' (linear layers packed for oneDNN)' if s.get('packed_linear') else ''}, batch {s['batch_size']}, "
        f"{plural(s['workers'], 'worker')}{', draft decoding' if s['draft_decode'] else ''}"
        f"{'' if s['preprocess'] == 'pillow' else ', preprocess ' + s['preprocess']}; {source}",
        markup=False, soft_wrap=True,
    )
    out.print(
        f"machine: {where}, {plural(m['cores'], 'core')}, torch {m['torch']} with {plural(m['torch_threads'], 'thread')}",
        markup=False, soft_wrap=True,
    )
    out.print(
        f"{result.images_per_s:.2f} images/s over {plural(result.measured_images, 'image')} "
        f"({result.wall_s:.1f} s; start-up {_startup(result)} and "
        f"{plural(s['warmup_batches'], 'warm-up batch', 'es')} excluded; "
        f"{plural(result.errors, 'unreadable image') + ' left out' if result.errors else 'no errors'})",
        markup=False, soft_wrap=True,
    )
    out.print("ms per image:", markup=False)
    on_gpu = not str(s["device"]).startswith("cpu")
    shown = {**STAGE_WORDS, **({} if s["workers"] else {"decode": "decode+preprocess (within the wait)"})}
    for stage, words in shown.items():  # what this run's device does not do is not listed
        if (stage == "transfer" and not on_gpu) or (stage == "device_decode" and s["preprocess"] != "gpu"):
            continue
        out.print(f"  {words:<35} {result.ms_per_image[stage]:10.1f}", markup=False)
    memory = [f"peak RSS {_mb(result.peak_rss_mb)} (main process)"]
    if result.peak_worker_rss_mb is not None:
        memory.append(f"{_mb(result.peak_worker_rss_mb)} (largest worker)")
    if result.peak_gpu_mb is not None:
        memory.append(f"peak GPU memory {_mb(result.peak_gpu_mb)}")
    out.print("memory: " + ", ".join(memory), markup=False, soft_wrap=True)


def _startup(result: BenchResult) -> str:
    return f"{result.ready_s:.1f} s from launch, {result.startup_s:.1f} s of it loading the model,"


def _mb(value: float | None) -> str:
    return "unknown" if value is None else f"{value:,.0f} MB"


def _default_batch_size(device: str) -> int:
    from ..devices import default_batch_size, resolve_device

    return default_batch_size(resolve_device(device))
