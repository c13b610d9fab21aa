"""What a machine does with ramtag: images/s, where the time goes, and how much memory it takes.

``run_bench`` drives the real pipeline (``run_batches``: DataLoader workers, the model, the stage
timings it collects) and writes a real Parquet output through ``ResumableOutput``, as ``ramtag run``
does, into a temporary folder; so the figures are those of a run, minus the start-up. The first
``warmup`` batches are tagged and written but left out: they pay for starting the workers and for
the first, slow passes through the model.

Inputs need not be downloaded: ``write_synthetic_images`` makes photo-like JPEGs (their decoding
cost is that of photos of the same size) and ``random_tagger`` builds the released architecture
with random weights and a made-up vocabulary. Scores are meaningless then; the timings are not.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .devices import resolve_device
from .precision import resolve
from .errors import UsageError
from .model.config import ModelConfig, named_config
from .model.labels import TagVocabulary
from .model.packed import is_packed
from .tagger import Tagger

SYNTHETIC_SIZE = (1600, 1200)  # a 2-megapixel photo: larger than the input, as photos are
# Per-image stages, in pipeline order. ``decode`` is worker time (decode + preprocess), summed over
# workers; ``model`` is the whole model call, of which transfer + backbone + head are the parts.
STAGES = ("decode", "wait", "device_decode", "transfer", "backbone", "head", "model", "write")


def synthetic_vocabulary(num_tags: int) -> TagVocabulary:
    """``tag0000``, ``tag0001``, ... at the official default threshold: a vocabulary of the right size."""
    width = max(4, len(str(num_tags - 1)))
    return TagVocabulary.from_names([f"tag{index:0{width}d}" for index in range(num_tags)])


def model_config(name_or_file: str) -> ModelConfig:
    """A released architecture by name (``ram_plus_swin_large_14m``), or a config ``.json`` file."""
    try:
        return named_config(name_or_file)
    except KeyError:
        pass
    path = Path(name_or_file)
    if path.suffix == ".json" and path.is_file():
        try:
            return ModelConfig.from_json(path.read_text(encoding="utf-8"))
        except (ValueError, TypeError, KeyError) as exc:
            raise UsageError(f"{path}: not a model config ({exc})") from None
    raise UsageError(
        f"unknown config {name_or_file!r}; use ram_plus_swin_large_14m, ram_swin_large_14m "
        "or a config .json file"
    )


def random_tagger(
    config: ModelConfig,
    *,
    vocabulary: TagVocabulary | None = None,
    device: str = "auto",
    precision: str = "auto",
    seed: int = 0,
) -> Tagger:
    """The architecture of ``config`` with random weights: full-size timings without a download.

    The weights are the calibrated ones (about 1% of tags over threshold, as with trained weights),
    so the write stage and the tags of a bench run look like those of a real one."""
    from .model.synthetic import random_model

    target = resolve_device(device)  # a bad --device or --precision fails before the slow part
    chosen = resolve(precision, target)
    vocabulary = vocabulary or synthetic_vocabulary(config.num_tags)
    return Tagger(random_model(config, seed=seed, calibrated=True), vocabulary, device=target, precision=chosen)


def checkpoint_tagger(
    checkpoint: Path,
    *,
    tag_list: Path | None = None,
    thresholds: Path | None = None,
    device: str = "auto",
    precision: str = "auto",
) -> Tagger:
    """A weights file with its tag list, or, without one, a made-up vocabulary of its size.

    Tag names do not change the speed, and a benchmark should not need a download.
    """
    from .model.load import load_model
    from .vocabulary import load_vocabulary

    target = resolve_device(device)
    chosen = resolve(precision, target)
    vocabulary = load_vocabulary(tag_list=tag_list, thresholds=thresholds) if tag_list else None
    network, info = load_model(checkpoint, num_tags=len(vocabulary) if vocabulary else None)
    vocabulary = vocabulary or synthetic_vocabulary(network.config.num_tags)
    return Tagger(network, vocabulary, device=target, precision=chosen, info=info)


def write_synthetic_images(
    folder: Path,
    count: int,
    size: tuple[int, int] = SYNTHETIC_SIZE,
    *,
    seed: int = 0,
    processes: int = 1,
) -> list[Path]:
    """``count`` different photo-like JPEGs of ``size``: smooth colour, texture and sensor noise.

    Decoding time depends on the size and on how much detail the JPEG holds; flat or pure-noise
    images would make decoding look cheaper or dearer than it is for photos. Each file depends on
    its index alone, so ``processes`` > 1 makes the same files faster.
    """
    make = functools.partial(_synthetic_image, folder, size, seed)
    if processes <= 1 or count <= 1:
        return [make(index) for index in range(count)]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(processes, count)) as pool:
        return list(pool.map(make, range(count), chunksize=4))


def _synthetic_image(folder: Path, size: tuple[int, int], seed: int, index: int) -> Path:
    width, height = size
    rng = np.random.default_rng([seed, index])
    coarse = rng.integers(0, 256, (max(2, height // 200), max(2, width // 200), 3), dtype=np.uint8)
    fine = rng.integers(0, 256, (max(2, height // 12), max(2, width // 12), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize(size, Image.BICUBIC), dtype=np.float32)
    texture = np.asarray(Image.fromarray(fine).resize(size, Image.BILINEAR), dtype=np.float32)
    noise = rng.standard_normal((height, width, 3), dtype=np.float32) * 3.0
    pixels = np.clip(base + 0.3 * (texture - 128.0) + noise, 0, 255).astype(np.uint8)
    path = folder / f"synthetic_{index:05d}.jpg"
    Image.fromarray(pixels).save(path, "JPEG", quality=90)
    return path


@dataclass(frozen=True)
class BenchResult:
    """One benchmark: settings, throughput, time per image and stage, memory, and the machine."""

    settings: dict[str, Any]
    images: int  # tagged in all, warm-up included
    measured_images: int  # after the warm-up: what the figures below are about
    errors: int
    startup_s: float  # building or loading the model, before any image
    ready_s: float  # imports + loading: from launch to the first image, what a user waits for
    wall_s: float  # the measured part: from the end of the warm-up to the output in place
    images_per_s: float
    ms_per_image: dict[str, float]
    peak_rss_mb: float | None  # the main process, over its whole life
    peak_worker_rss_mb: float | None  # the largest DataLoader worker (pages shared with main count)
    peak_gpu_mb: float | None  # torch.cuda.max_memory_allocated, from the model load on
    machine: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_bench(
    load: Callable[[], Tagger],
    folder: Path,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    warmup: int = 1,
    draft_decode: bool = False,
    preprocessing: str = "pillow",
    imports_s: float | None = None,
    on_status: Callable[[str], None] | None = None,
    keep_output: Path | None = None,
) -> BenchResult:
    """Load the model with ``load`` (timed as start-up), then tag every image under ``folder``.

    ``imports_s`` is how long the process took to get here (interpreter, torch, timm), for the
    start-up a user waits for; by default the time since ramtag was imported, which a caller that
    did other work first (generating images) measures itself instead. The rows go to a temporary
    Parquet file, as ``ramtag run --out`` would write them, or to ``keep_output`` to look at them.
    """
    imports = process_age_s() if imports_s is None else imports_s
    from .devices import default_batch_size
    from .engine.job import ResultOptions
    from .engine.runner import run
    from .inputs import discover
    from .outputs.file import ResumableOutput
    from .outputs.schema import schema_for
    from .pipeline import StageTimings, default_workers

    status = on_status or (lambda _text: None)
    refs = list(discover([folder]))  # found before the clock starts; a benchmark set is small
    if not refs:
        raise UsageError(f"{folder}: no images found to time")
    if batch_size is not None:  # said before loading, when it can be
        _check_warmup(len(refs), batch_size, warmup)
    status("loading the model")
    started = time.perf_counter()
    tagger = load()
    startup = time.perf_counter() - started
    if batch_size is None:
        batch_size = default_batch_size(tagger.device)
        _check_warmup(len(refs), batch_size, warmup)
    workers = default_workers(tagger.device, preprocessing) if workers is None else workers
    ready = imports + startup
    cuda = tagger.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(tagger.device)
    from .engine.job import check_preprocess_device

    check_preprocess_device(preprocessing, tagger.device.type)
    results = ResultOptions(draft_decode=draft_decode, preprocess=preprocessing)
    schema = schema_for(tagger, "en", False, results)  # as `ramtag run` writes
    timings = StageTimings()
    warming = f", the first {warmup * batch_size} to warm up" if warmup else ""
    status(f"tagging {len(refs)} images{warming}")
    clock: dict[str, Any] = {}

    def batch(number: int, records: list) -> None:
        failed = [record for record in records if record.error is not None]
        if number > warmup:  # an image that failed is no image tagged: left out of images/s
            clock["failed"] = clock.get("failed", 0) + len(failed)
        if failed and "example" not in clock:
            clock["example"] = f"{failed[0].key}: {failed[0].error}"
        if number == warmup:  # the measured part starts after the warm-up batches
            clock.update(started=time.perf_counter(), before=replace(timings))

    with tempfile.TemporaryDirectory(prefix="ramtag-bench-") as tmp:
        dest = keep_output if keep_output is not None else Path(tmp) / "bench.parquet"
        with ResumableOutput(dest, "parquet", schema, overwrite=True) as target:
            clock.update(started=time.perf_counter(), before=replace(timings))  # the output is open
            result = run(
                refs, tagger, target, batch_size=batch_size, workers=workers, timings=timings,
                draft_decode=draft_decode, preprocessing=preprocessing, on_batch=batch,
            )  # the workers have exited when it returns: their peak memory is known
        wall = time.perf_counter() - clock["started"]
    before, errors = clock["before"], result.errors
    measured = timings.images - before.images - clock.get("failed", 0)
    if measured <= 0:
        raise UsageError(f"{folder}: no image after the warm-up could be tagged (e.g. {clock.get('example', '?')}); "
                         "time a folder of images that read")
    return BenchResult(
        settings={
            "model": tagger.config.kind,
            "weights": str(tagger.info.path) if tagger.info else "random",
            "input_size": tagger.config.image_size,
            "num_tags": len(tagger.vocabulary),
            "device": str(tagger.device),
            "precision": tagger.precision.name,
            "packed_linear": is_packed(tagger.model),  # oneDNN's layout (x86 CPUs; RAMTAG_PACKED_LINEAR)
            "batch_size": batch_size,
            "workers": workers,
            "warmup_batches": warmup,
            "draft_decode": draft_decode,
            "preprocess": preprocessing,
        },
        images=timings.images,
        measured_images=measured,
        errors=errors,
        startup_s=round(startup, 3),
        ready_s=round(ready, 3),
        wall_s=round(wall, 3),
        images_per_s=round(measured / wall, 3) if wall > 0 else 0.0,
        ms_per_image={
            stage: round(1000 * (getattr(timings, stage) - getattr(before, stage)) / measured, 3)
            for stage in STAGES
        },
        peak_rss_mb=_peak_rss_mb(children=False),
        peak_worker_rss_mb=_peak_rss_mb(children=True) if workers else None,
        peak_gpu_mb=round(torch.cuda.max_memory_allocated(tagger.device) / 2**20, 1) if cuda else None,
        machine=machine(tagger.device),
    )


def _check_warmup(images: int, batch_size: int, warmup: int) -> None:
    batches = math.ceil(images / batch_size)
    if warmup >= batches:
        raise UsageError(
            f"{images} image{'s make' if images != 1 else ' makes'} {batches} batch{'es' if batches != 1 else ''} of "
            f"{batch_size}, none left to measure after {warmup} warm-up batch{'es' if warmup != 1 else ''}: give more "
            "images or a smaller --warmup"
        )


def process_age_s() -> float:
    """Seconds since ramtag was imported, so start-up includes importing torch and timm.

    Those imports take seconds of their own before any ramtag code runs; a start-up figure that
    left them out would not be what a user waits for.
    """
    from .version import IMPORTED_AT

    return time.perf_counter() - IMPORTED_AT


def _peak_rss_mb(*, children: bool) -> float | None:
    """Peak resident memory of this process, or of the largest child that has exited."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    peak = resource.getrusage(who).ru_maxrss
    unit = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return round(peak * unit / 2**20, 1)


# The CPU features that decide how fast the precisions run (fp32 vectors; native bf16 and fp16).
VECTOR_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")


def machine(device: torch.device) -> dict[str, Any]:
    """What a figure was measured on, in the words a README table quotes."""
    from .cpu import cpu_flags, native_bf16

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    flags = cpu_flags()
    return {
        "cpu": _cpu_model(),
        "cpu_flags": [flag for flag in VECTOR_FLAGS if flag in flags],
        "native_bf16": native_bf16(),  # what --precision auto goes by (RAMTAG_NATIVE_BF16 included)
        "cores": cores,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(terse=True),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"

