"""A job on a Ray cluster: checked, planned into units, tagged by actors, committed part by part.

The driver's side of ``--engine ray``: the job is checked and its inputs found before Ray is
imported (``ray_engine`` is the only module that imports it), then the units still to do are handed
to the actors and each part they return is committed to the dataset folder as it arrives.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .job import Job

if TYPE_CHECKING:
    from ..inputs.roots import KeyPlan
    from ..outputs.dataset import DatasetOutput
    from .ray_engine import UnitOutcome
    from .units import Plan


class ClusterEvents:
    """What a Ray run reports while it goes; override what you want to show."""

    def warning(self, path: Path, why: str) -> None:
        """Discovery skipped something."""

    def planned(self, plan: Plan, output: DatasetOutput, actors: int) -> None:
        """The units are known and the output folder is open; tagging starts."""

    def unit(self, outcome: UnitOutcome) -> None:
        """One unit is done: committed, or left to a re-run."""


@dataclass
class ClusterRun:
    plan: Plan
    output: DatasetOutput
    failures: int  # units that could not be read: not committed, a re-run retries them
    interrupted: bool  # Ctrl-C: the parts committed so far stay


def run_job_on_ray(job: Job, events: ClusterEvents | None = None) -> ClusterRun:
    """Plan the units, tag them on the cluster, commit each part as it comes."""
    from ..inputs import discover_items
    from ..inputs.findings import Findings, some_images
    from ..inputs.roots import Root
    from .local import check_names, input_paths, tagger_for

    job.check()
    from ..outputs.dataset import dataset_roots

    events = events or ClusterEvents()
    found, cluster = job.inputs, job.cluster
    findings = Findings()
    plans: list[KeyPlan] = []
    recorded = [] if job.outputs.overwrite else dataset_roots(Path(job.outputs.out))
    items = discover_items(input_paths(found.paths), files_from=found.files_from, hidden=found.hidden,
                           on_error=events.warning, findings=findings,  # checks the inputs exist first
                           recorded=recorded, on_plan=plans.append)
    items = some_images(items, findings, found.paths)
    from ..outputs.dataset import DatasetOutput
    from ..outputs.schema import schema_for
    from .ray_engine import RayEngine  # Ray is imported here, once the job is known to be right
    from .job import check_preprocess_device
    from .units import plan_units

    with RayEngine(address=cluster.address, num_gpus_per_worker=cluster.num_gpus_per_worker,
                   concurrency=cluster.concurrency, workers=job.workers) as engine:
        device, precision = engine.device_and_precision(job.model.device, job.model.precision)
        check_preprocess_device(job.results.preprocess, device.split(":")[0])  # the actors' device
        job = job.replace(model=replace(job.model, device=device, precision=precision),
                          roots=tuple((root.path, root.prefix) for root in plans[0].table))
        # The driver's own copy checks the files and gives the schema; the actors load theirs.
        tagger = tagger_for(replace(job.model, device="cpu"))
        check_names(tagger, job.outputs.lang)
        schema = schema_for(tagger, job.outputs.lang, job.outputs.all_scores, job.results,
                            roots=[Root(path, prefix) for path, prefix in job.roots])
        del tagger
        with DatasetOutput.for_schema(Path(job.outputs.out), schema, overwrite=job.outputs.overwrite) as output:
            plan = plan_units(
                items, done_shards=output.done_shards, done_keys=output.done_keys(),
                images_per_unit=job.outputs.save_every, include=found.include, exclude=found.exclude,
            )
            events.planned(plan, output, engine.concurrency)
            failures, interrupted = 0, False
            outcomes = engine.run(plan.units, job, output)
            try:
                for outcome in outcomes:
                    failures += outcome.part is None
                    events.unit(outcome)
            except KeyboardInterrupt:
                interrupted = True
                try:
                    outcomes.close()  # stops the Ray run; the parts already committed stay
                except Exception:  # noqa: BLE001 - Ctrl-C may have stopped a local Ray already
                    pass
    return ClusterRun(plan, output, failures, interrupted)
