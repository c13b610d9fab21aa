"""The Ray engine: work units through Ray Data to actors that hold the model, parts committed here.

Ray Data's batch-inference pattern: one row per unit (a tar shard, or a chunk of image files),
``map_batches`` with a callable class that loads the model once per actor (one per GPU, or per
CPU core on CPU-only clusters) and tags one unit per call with the local engine's own code
(``worker.UnitTagger``). Each call returns its unit's Parquet part as bytes; the driver writes and
commits each part as it arrives (``outputs.dataset``). That, rather than ``Dataset.write_parquet``,
is what makes a run resumable by shard: ``write_parquet`` names its files per block and commits
nothing per input shard. It also means only the driver writes the output, so workers need to reach
the inputs (object storage, or a shared file system) but not the output folder.

This is the only module that imports Ray, and nothing imports it unless ``--engine ray`` is used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from ..errors import OutputError, RamtagError, UsageError
from ..outputs.dataset import DatasetOutput, Part
from ..outputs.schema import differences
from ..pipeline import MAX_GPU_WORKERS
from .job import Job
from .units import WorkUnit
from .worker import UnitTagger

try:
    import ray
    import ray.data
except ImportError:  # pragma: no cover - the message is the point
    raise UsageError("--engine ray needs Ray: pip install 'ramtag[ray]'") from None



@dataclass(frozen=True)
class UnitOutcome:
    """One unit done: its committed ``part``, or the ``failure`` that left it to a re-run."""

    unit: WorkUnit
    part: Part | None
    failure: str | None
    seconds: float


class RayEngine:
    """A connection to a Ray cluster (an existing one, or a local one started for this run) and
    the shape of the actors: GPUs and CPUs each, and how many."""

    def __init__(
        self,
        *,
        address: str | None = None,
        num_gpus_per_worker: float | None = None,
        concurrency: int | None = None,
        workers: int | None = None,
    ) -> None:
        self.started = _connect(address)
        try:
            resources = ray.cluster_resources()
            gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
            self.num_gpus = num_gpus_per_worker if num_gpus_per_worker is not None else (1.0 if gpus else 0.0)
            if self.num_gpus > gpus:
                raise UsageError(
                    f"--num-gpus-per-worker {self.num_gpus:g} but the Ray cluster has {gpus:g} GPUs; "
                    "pass --num-gpus-per-worker 0 to tag on CPUs"
                )
            if self.num_gpus:
                fits = max(1, int(gpus // self.num_gpus))
                # Decoding processes beside each GPU actor: every CPU the cluster has for it, as
                # for a local GPU run (decoding, not the GPU, sets the pace: ramtag.pipeline).
                spare = int(cpus // fits) - 1
                self.workers = workers if workers is not None else max(0, min(MAX_GPU_WORKERS, spare))
                self.num_cpus = 1 + self.workers
            else:
                self.workers = workers if workers is not None else 0
                self.num_cpus = 1 + self.workers
                fits = max(1, int(cpus // self.num_cpus))
            if self.num_cpus > cpus:  # Ray would wait for ever for an actor no node can hold
                raise UsageError(
                    f"each Ray actor needs {self.num_cpus} CPUs (itself and --workers {self.workers}) but the "
                    f"cluster has {cpus:g}; pass --workers {max(0, int(cpus) - 1)} or fewer"
                )
            self.concurrency = concurrency if concurrency is not None else fits
        except BaseException:
            self.close()
            raise

    def device_and_precision(self, device: str, precision: str) -> tuple[str, str]:
        """What the actors will use, decided once so that every part records the same settings:
        ``auto`` is a GPU when actors get one, and the precision is the policy's for that device
        (``ramtag.precision``). On CPUs ``auto`` is fp32 here: the driver cannot see whether the
        cluster's CPUs have native bf16, and they need not all be alike (``--precision bf16-mixed``
        asks for it)."""
        from ..precision import resolve

        if device == "auto":
            device = "cuda" if self.num_gpus else "cpu"
        return device, resolve(precision, device.split(":")[0], detect=False).name

    def run(self, units: Sequence[WorkUnit], job: Job, output: DatasetOutput) -> Iterator[UnitOutcome]:
        """Tag ``units``, committing each part as it comes; yields each unit when it is done.

        Stopping the iteration (Ctrl-C, an error) stops the run: committed parts stay, the rest is
        left to a re-run.
        """
        if not units:
            return
        job = replace(job, workers=self.workers)
        _quiet_ray_data()
        rows = [{"unit": number, "spec": unit.to_json()} for number, unit in enumerate(units)]
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))  # one unit per call
        tagged = dataset.map_batches(
            _UnitActor,
            fn_constructor_args=(job.to_json(),),
            batch_size=1,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(size=min(self.concurrency, len(units))),
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus or None,
        )
        results = tagged.iter_rows()
        try:
            for row in _unwrapped(results):
                unit = units[row["unit"]]
                if row["failure"] is not None:
                    yield UnitOutcome(unit, None, row["failure"], row["seconds"])
                    continue
                changed = differences(output.settings, _settings(row["settings"]))
                if changed:
                    raise OutputError(
                        f"a Ray worker tagged with other settings than this run: {'; '.join(changed)}; "
                        "every node must see the same checkpoint and tag lists"
                    )
                part = output.commit(unit.name, row["data"], row["rows"], row["errors"], version=unit.version)
                yield UnitOutcome(unit, part, None, row["seconds"])
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()

    def close(self) -> None:
        if self.started and ray.is_initialized():
            ray.shutdown()
        self.started = False

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _UnitActor:
    """The callable class of ``map_batches``: the model loaded once per actor, one unit a call."""

    def __init__(self, job_json: str) -> None:
        job = Job.from_json(job_json)
        if job.model.device == "cpu":
            import torch

            assigned = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
            torch.set_num_threads(max(1, int(assigned) - (job.workers or 0)))
        self.worker = UnitTagger(job)

    def __call__(self, batch: pa.Table) -> pa.Table:
        import json

        units = [WorkUnit.from_json(spec) for spec in batch.column("spec").to_pylist()]
        results = [self.worker.tag(unit) for unit in units]
        return pa.table(
            {
                "unit": batch.column("unit"),
                "data": pa.array([r.data for r in results], pa.large_binary()),
                "rows": pa.array([r.rows for r in results], pa.int64()),
                "errors": pa.array([r.errors for r in results], pa.int64()),
                "failure": pa.array([r.failure for r in results], pa.string()),
                "seconds": pa.array([r.seconds for r in results], pa.float64()),
                "settings": pa.array([json.dumps(r.settings) for r in results], pa.string()),
            }
        )


def _settings(text: str) -> dict[str, Any]:
    import json

    return json.loads(text)


def _connect(address: str | None) -> bool:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start a local one; True when
    this run started Ray (and so stops it at the end)."""
    if ray.is_initialized():
        return False
    options: dict[str, Any] = {"logging_level": logging.WARNING, "log_to_driver": False}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        options["include_dashboard"] = False
    try:
        ray.init(address=address, **options)
    except ConnectionError as error:
        raise UsageError(
            f"--address {address or os.environ.get('RAY_ADDRESS')}: no Ray cluster answered ({error}); "
            "start one with `ray start --head`, or leave --address out to start a local one"
        ) from None
    return True


def _quiet_ray_data() -> None:
    """ramtag reports progress itself; Ray Data's bars and start-up lines would interleave."""
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)  # its errors reach us as exceptions
    ray.data.DataContext.get_current().enable_progress_bars = False


def _unwrapped(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows as they come; a worker's user-facing error (a missing checkpoint on a node) comes
    out as that error, one line, not as Ray's wrapped traceback."""
    try:
        yield from rows
    except ray.exceptions.RayError as error:
        cause = _ramtag_cause(error)
        if cause is not None:
            raise cause from None
        if isinstance(error, ray.exceptions.ActorDiedError):  # never ran: no error of ramtag's to show
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise RamtagError(
                f"a Ray worker could not start ({first}); `ray logs` on the cluster says why (a cluster "
                "started with another auth token than this machine's ~/.ray/auth_token refuses its workers)"
            ) from None
        raise


def _ramtag_cause(error: BaseException) -> RamtagError | None:
    """The ``RamtagError`` inside Ray's wrappers (an actor that died in ``__init__`` holds a task
    error in its arguments, whose ``cause`` is ours), searched through causes and arguments."""
    pending: list[object] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, RamtagError):
            return current
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None), *current.args]
    return None
