"""The tagging loop, once: refs -> batches -> records -> outputs, with a stop signal and timings.

Every way ramtag tags images goes through ``run``: ``ramtag run`` (``engine.local``), each unit of a
Ray run on its actor (``engine.worker``), ``eval --images`` (``scoring``), ``bench`` and the Python
API (``Tagger.tag``). What differs between them is only which refs come in, which ``Output`` the
records go to, and what they do with the progress callback.

An image is tagged only when its output still needs it (``Output.needs``: a re-run skips what is
done). A stop request (Ctrl-C) is honoured between batches: the batch in hand is written and saved,
so nothing tagged is lost and a re-run continues from there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..inputs.identity import stamped
from ..inputs.refs import MAX_PIXELS
from ..pipeline import StageTimings, run_batches
from ..stopping import prefetched

if TYPE_CHECKING:
    from ..inputs import ImageRef
    from ..outputs.base import Output
    from ..pipeline import ImageRecord
    from ..tagger import Tagger

BatchCallback = Callable[[int, list["ImageRecord"]], None]  # (batch number from 1, its records)


@dataclass
class RunResult:
    """What a run did: images tagged (errors among them), refs skipped as done, whether it stopped."""

    images: int = 0
    errors: int = 0
    skipped: int = 0
    stopped: bool = False
    timings: StageTimings = field(default_factory=StageTimings)


def run(
    refs: Iterable[ImageRef],
    tagger: Tagger,
    output: Output,
    *,
    batch_size: int,
    workers: int | None = None,
    top_k: int | None = None,
    max_pixels: int | None = MAX_PIXELS,
    draft_decode: bool = False,
    raw_decode: str = "auto",
    preprocessing: str = "pillow",
    upright: bool = True,
    content_hash: bool = False,
    stop: threading.Event | None = None,
    on_batch: BatchCallback | None = None,
    on_tagged: Callable[[], None] | None = None,
    timings: StageTimings | None = None,
) -> RunResult:
    """Tag the refs ``output`` needs and hand it their records, batch by batch; then finish it.

    ``stop`` set (from a signal handler or another thread) ends the run after the batch in hand,
    which is saved (``Output.save``) instead of finished. ``on_tagged`` is called when the last
    batch is written, before the outputs are completed (a terminal table is printed then, so a
    progress bar should stop first). Exceptions propagate: the caller's
    ``with output`` releases it, and what was saved stays resumable.

    Each image file's size and time are taken before the outputs are asked (``content_hash``: its
    SHA-256 too), and recorded in its row: what a re-run compares (``inputs.identity``).
    """
    result = RunResult(timings=timings if timings is not None else StageTimings())
    if stop is not None and stop.is_set():  # stopped before it began: nothing tagged, what is saved kept
        result.stopped = True
        output.save()
        return result
    # Read ahead on a thread: a stop is heard while the next image is awaited (``stopping``).
    ahead = prefetched(refs, stop) if stop is not None else None
    batches = run_batches(
        _needed(ahead or refs, output, result, content_hash), tagger, batch_size=batch_size, workers=workers,
        top_k=top_k, max_pixels=max_pixels, timings=result.timings, draft_decode=draft_decode,
        raw_decode=raw_decode, preprocessing=preprocessing, upright=upright,
    )
    try:
        for number, records in enumerate(batches, start=1):
            with result.timings.timing("write"):
                records = output.write_records(records)
            result.images += len(records)
            result.errors += sum(record.error is not None for record in records)
            if on_batch is not None:
                on_batch(number, records)
            if stop is not None and stop.is_set():
                break
    finally:
        batches.close()  # stops the decoding workers
        if ahead is not None:
            ahead.close()  # and the inputs' thread, whatever ended the run
    result.stopped = stop is not None and stop.is_set()  # after a batch, or while the next was awaited
    if on_tagged is not None:
        on_tagged()
    with result.timings.timing("write"):
        if result.stopped:
            output.save()
        else:
            output.finish()
    return result


def _needed(refs: Iterable[ImageRef], output: Output, result: RunResult, content: bool) -> Iterator[ImageRef]:
    for ref in refs:
        ref = stamped(ref, content=content)
        if output.needs(ref):
            yield ref
        else:
            result.skipped += 1
