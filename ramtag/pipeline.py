"""From a stream of image files to one scored record per image, with the model kept resident.

Reader → mapper: ``ImageDataset`` decodes and preprocesses one image inside a DataLoader worker
(a bad file becomes an error string: failures are data, a worker never raises), ``collate`` stacks
the good ones and keeps the failures beside them, and ``run_batches`` feeds the model and yields the
records of each batch in discovery order. The loop around it, with the outputs, is
``engine.runner``.

The refs reach the workers through the DataLoader's sampler, which pulls them lazily from whatever
iterable it is given (``inputs.discover`` streams), so a million-file collection is never held as a
list: at most ``prefetch_factor * workers`` batches are in flight, and records are yielded, not kept.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from .errors import RamtagError, RamtagWarning, silence
from .hostmem import release_activations_promptly, threshold_for
from .inputs import MAX_PIXELS, ImageRef, decode_ref, original_size
from .inputs.decode import decode_or_encoded
from .inputs.identity import Stamp
from .inputs.jpeg import EncodedJpeg, original
from .inputs.raw import RawOptions
from .model.transform import preprocess

if TYPE_CHECKING:  # the pipeline is handed a tagger; it never imports one
    from .tagger import Tagger, TagResult


@dataclass(frozen=True)
class Prepared:
    """One image as a worker hands it back: pixels and size, or why there are none."""

    key: str
    pixels: torch.Tensor | None
    width: int | None
    height: int | None
    error: str | None
    seconds: float = 0.0
    path: Path | None = None  # where the image is, for outputs placed beside it (XMP sidecars)
    stamp: Stamp | None = None  # the file's size and time when it was picked (``inputs.identity``)
    jpeg: EncodedJpeg | None = None  # still encoded: decoded on the device (``--preprocess gpu``)


@dataclass(frozen=True)
class ImageRecord:
    """The outcome for one image: its tags, or the error that kept it from being tagged."""

    key: str
    result: TagResult | None
    width: int | None
    height: int | None
    error: str | None
    path: Path | None = None  # the file it came from, for outputs placed beside it (XMP sidecars)
    stamp: Stamp | None = None  # its size and time, recorded so a re-run can tell it changed


@dataclass
class StageTimings:
    """Seconds spent per stage, summed over the run: how to find the bottleneck (``--verbose``).

    ``decode`` is worker time (summed over workers, so it can exceed the wall time); ``wait`` is the
    time the model sat idle waiting for decoded batches, which is what matters when it is large.
    ``device_decode`` is the main process decoding JPEGs on the device (``--preprocess gpu``).
    ``model`` is split into ``transfer`` (host to device), ``backbone`` (image tokens) and ``head``
    (re-weighting, decoder, scores back on the host) by ``Tagger.scores``; the split is what says
    whether a faster backbone, head or input path would pay.
    """

    images: int = 0
    batches: int = 0
    decode: float = 0.0
    wait: float = 0.0
    model: float = 0.0
    write: float = 0.0
    device_decode: float = 0.0
    transfer: float = 0.0
    backbone: float = 0.0
    head: float = 0.0

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        setattr(self, stage, getattr(self, stage) + seconds)

    def stages(self) -> dict[str, float]:
        """The stages a run went through (``device_decode`` only where JPEGs were decoded there)."""
        stages = {"decode": self.decode, "wait": self.wait}
        if self.device_decode:
            stages["device_decode"] = self.device_decode
        return {**stages, "model": self.model, "write": self.write}

    def model_stages(self) -> dict[str, float]:
        """The parts of ``model``; their sum falls short of it by the call overhead."""
        return {"transfer": self.transfer, "backbone": self.backbone, "head": self.head}


class ImageDataset(Dataset):
    """Decode and preprocess the ``ImageRef`` it is indexed with (the sampler yields refs)."""

    def __init__(
        self,
        prepare: Callable[[Image.Image], torch.Tensor],
        *,
        max_pixels: int | None = MAX_PIXELS,
        draft_size: int | None = None,
        raw: RawOptions | None = None,
        encoded_jpegs: bool = False,
        upright: bool = True,
    ) -> None:
        self.prepare = prepare
        self.max_pixels = max_pixels
        self.draft_size = draft_size  # decode JPEGs at reduced scale, down to this size (inputs)
        self.raw = raw or RawOptions()  # camera raws: preview or demosaic
        self.encoded_jpegs = encoded_jpegs  # plain JPEGs handed back encoded, for the device to decode
        self.upright = upright  # EXIF orientation applied (False: pixels as stored, --ignore-orientation)

    def __getitem__(self, ref: ImageRef) -> Prepared:  # type: ignore[override]
        start = time.perf_counter()
        try:
            # a file, or a tar member's bytes
            decode = decode_or_encoded if self.encoded_jpegs else decode_ref
            image = decode(ref, max_pixels=self.max_pixels, draft_size=self.draft_size, raw=self.raw, upright=self.upright)
            if isinstance(image, EncodedJpeg):
                seconds = time.perf_counter() - start
                return Prepared(ref.key, None, image.width, image.height, None, seconds, ref.path, ref.stamp, image)
            width, height = original_size(image)
            pixels = self.prepare(image)
        except Exception as exc:  # noqa: BLE001 - a worker must hand back data, never die
            return Prepared(ref.key, None, None, None, _why(exc), time.perf_counter() - start, ref.path, ref.stamp)
        return Prepared(ref.key, pixels, width, height, None, time.perf_counter() - start, ref.path, ref.stamp)


@dataclass(frozen=True)
class Batch:
    """The images of one batch in order; ``pixels`` stacks only those that decoded.

    Still-encoded JPEGs (``--preprocess gpu``) travel as one ``uint8`` tensor, ``encoded``, their
    bytes end to end (``spans``: each one's start and end, in item order), so that the DataLoader
    moves them through shared memory in one piece instead of pickling each file through a pipe.
    """

    items: list[Prepared]
    pixels: torch.Tensor | None
    encoded: torch.Tensor | None = None
    spans: tuple[tuple[int, int], ...] = ()

    def pin_memory(self) -> Batch:  # called by the DataLoader's pinning thread on CUDA
        return replace(self, pixels=self.pixels.pin_memory() if self.pixels is not None else None)


def collate(items: list[Prepared]) -> Batch:
    good = [item.pixels for item in items if item.pixels is not None]
    pixels = torch.stack(good) if good else None
    datas = [item.jpeg.data for item in items if item.jpeg is not None]
    if not datas:
        return Batch([replace(item, pixels=None) for item in items], pixels)
    encoded = torch.empty(sum(len(data) for data in datas), dtype=torch.uint8)
    packed, spans, start = encoded.numpy(), [], 0
    for data in datas:
        packed[start : start + len(data)] = np.frombuffer(data, dtype=np.uint8)
        spans.append((start, start + len(data)))
        start += len(data)
    stripped = [replace(item, pixels=None, jpeg=item.jpeg and replace(item.jpeg, data=b"")) for item in items]
    return Batch(stripped, pixels, encoded, tuple(spans))


class _RefStream(Sampler):
    """Hands the DataLoader refs as they are discovered: the refs are the dataset's indices."""

    def __init__(self, refs: Iterable[ImageRef]) -> None:
        self.refs = refs

    def __iter__(self) -> Iterator[ImageRef]:
        return iter(self.refs)


MAX_GPU_WORKERS = 32
GPU_DECODING_WORKERS = 8  # with --preprocess gpu, by default (other formats are still theirs to decode)


def default_workers(device: torch.device | None = None, preprocessing: str = "pillow") -> int:
    """Decoding processes: for a GPU model every core but the main process's; for a CPU model up
    to 4, and none on a CPU of 1 or 2 cores.

    When the model runs on the CPU it takes ~50x longer per image than decoding, so a worker has
    little to overlap, and on two cores its process competes with the model's two threads: the
    full-size RAM++ at batch 4 tagged 3.5% fewer images/s with one worker than with none (2-core
    VM, two runs each). On a GPU it is the other way round: an H100 runs the model in 1.6 ms per
    image in bf16, while one core decodes and resizes a 2-megapixel JPEG in 30-38 ms, so 4 workers
    gave 123 images/s and 15 gave 381 (16-core host, batch 64), still short of the GPU. Beyond
    ``MAX_GPU_WORKERS`` (enough for about 1,000 images/s) more processes only cost memory. With
    ``--preprocess gpu`` the workers only read JPEGs (and decode other files), and every batch in
    flight holds its files' bytes: ``GPU_DECODING_WORKERS`` at most.
    """
    cores = _usable_cores()
    if cores <= 1:
        return 0
    if device is not None and device.type in {"cuda", "mps"}:
        limit = GPU_DECODING_WORKERS if preprocessing == "gpu" else MAX_GPU_WORKERS
        return min(limit, cores - 1)
    if device is not None and device.type == "cpu" and cores <= 2:
        return 0
    return min(4, cores - 1)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _init_worker(_worker_id: int) -> None:
    # Ctrl-C and SIGTERM are the main process's to handle: it finishes the batch in hand, which
    # needs the workers alive (a terminal, `timeout`, systemd and Slurm signal the whole process
    # group; torch ends the workers once the main process is gone). One thread each: decoding is
    # per-image work, threads would only compete.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    torch.set_num_threads(1)


def make_loader(
    refs: Iterable[ImageRef],
    tagger: Tagger,
    *,
    batch_size: int = 8,
    workers: int | None = None,
    max_pixels: int | None = MAX_PIXELS,
    draft_decode: bool = False,
    raw_decode: str = "auto",
    preprocessing: str = "pillow",
    upright: bool = True,
) -> DataLoader:
    if workers is None:
        workers = default_workers(tagger.device, preprocessing)
    elif workers > (cores := _usable_cores()):  # said once, in place of torch's warning at each pass
        warnings.warn(RamtagWarning(f"--workers {workers} is more than the {cores} CPU"
                                    f"{'s' if cores > 1 else ''} this process may use: decoding may be slower, not faster"))
    silence(UserWarning, "This DataLoader will create")
    dataset = ImageDataset(
        partial(preprocess, config=tagger.config),
        max_pixels=max_pixels,
        draft_size=tagger.config.image_size if draft_decode else None,
        raw=RawOptions(raw_decode, tagger.config.image_size),
        encoded_jpegs=preprocessing == "gpu",
        upright=upright,
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=_RefStream(refs),
        collate_fn=collate,
        num_workers=workers,
        pin_memory=tagger.device.type == "cuda",
        worker_init_fn=_init_worker if workers else None,
        prefetch_factor=2 if workers else None,
    )


def run_batches(
    refs: Iterable[ImageRef],
    tagger: Tagger,
    *,
    batch_size: int = 8,
    workers: int | None = None,
    top_k: int | None = None,
    max_pixels: int | None = MAX_PIXELS,
    timings: StageTimings | None = None,
    draft_decode: bool = False,
    raw_decode: str = "auto",
    preprocessing: str = "pillow",
    upright: bool = True,
) -> Iterator[list[ImageRecord]]:
    """Tag ``refs`` and yield each batch's records, in the order the refs came.

    ``draft_decode`` decodes JPEGs at reduced scale when they are at least twice the model's input
    (``inputs.decode_image``): faster decoding, slightly different scores, so it is opt-in.
    ``preprocessing`` ``gpu`` has plain JPEGs decoded and resized on the tagger's device
    (``devicejpeg``) instead of by Pillow in the workers (``model.config.PREPROCESSING``).
    ``upright`` False leaves images as stored, their EXIF orientation ignored, as the official code does.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    if tagger.device.type == "cpu":
        release_activations_promptly(threshold_for(batch_size))  # activations live in host memory
    timings = timings if timings is not None else StageTimings()
    loader = make_loader(
        refs, tagger, batch_size=batch_size, workers=workers, max_pixels=max_pixels,
        draft_decode=draft_decode, raw_decode=raw_decode, preprocessing=preprocessing, upright=upright,
    )
    batches = iter(loader)
    while True:
        with timings.timing("wait"):
            batch = next(batches, None)
        if batch is None:
            return
        if any(item.jpeg is not None for item in batch.items):
            with timings.timing("device_decode"):
                batch = decoded_on_device(batch, tagger)
        timings.add("decode", sum(item.seconds for item in batch.items))
        with timings.timing("model"):
            scores = tagger.scores(batch.pixels, timings) if batch.pixels is not None else None
        records = []
        row = 0
        for item in batch.items:
            if item.error is not None:
                records.append(ImageRecord(item.key, None, None, None, item.error, item.path, item.stamp))
                continue
            result = tagger.result(scores[row], top_k)
            records.append(ImageRecord(item.key, result, item.width, item.height, None, item.path, item.stamp))
            row += 1
        timings.images += len(records)
        timings.batches += 1
        yield records


def decoded_on_device(batch: Batch, tagger: Tagger) -> Batch:
    """``batch`` with its still-encoded JPEGs decoded on the tagger's device, its pixels there in
    item order; a JPEG the device cannot decode is decoded by Pillow here, or becomes an error."""
    from .devicejpeg import decode_jpegs

    device = tagger.device
    jpegs = [item.jpeg for item in batch.items if item.jpeg is not None]
    assert batch.encoded is not None and len(batch.spans) == len(jpegs)
    files = [replace(jpeg, data=batch.encoded[start:end]) for jpeg, (start, end) in zip(jpegs, batch.spans)]
    decoded, failures = decode_jpegs(files, device, tagger.config)
    failed = set(failures)
    from_workers = iter(batch.pixels if batch.pixels is not None else ())
    from_device = iter(decoded if decoded is not None else ())
    items, rows, position = [], [], 0
    for item in batch.items:
        if item.jpeg is None:
            if item.error is None:
                rows.append(next(from_workers).to(device, non_blocking=True))
            items.append(item)
            continue
        if position in failed:
            row, error = _on_host(files[position], tagger)
        else:
            row, error = next(from_device), None
        position += 1
        if row is not None:
            rows.append(row)
        items.append(replace(item, jpeg=None, error=error))
    pixels = torch.stack(rows) if rows else None
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # the decoding's time is its own stage, not the model's
    return Batch(items, pixels)  # the encoded bytes are done with


def _on_host(jpeg: EncodedJpeg, tagger: Tagger) -> tuple[torch.Tensor | None, str | None]:
    """A JPEG the device could not decode, decoded by Pillow: its pixels, or what is wrong with it."""
    from .inputs import decode_bytes

    try:
        # its pixel count passed --max-pixels already, from its header
        image = decode_bytes(original(jpeg), name=jpeg.name, max_pixels=max(MAX_PIXELS, jpeg.width * jpeg.height))
        return preprocess(image, tagger.config).to(tagger.device), None
    except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
        return None, _why(exc)


def _why(exc: Exception) -> str:
    """What an image's error row says: ramtag's own words, or the exception's."""
    if isinstance(exc, RamtagError):
        return str(exc)
    return f"cannot use this image ({type(exc).__name__}: {exc})"
