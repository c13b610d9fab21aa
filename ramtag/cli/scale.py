"""``ramtag run --engine ray``: the options, the run on a Ray cluster, and what it says on stderr."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.progress import ProgressColumn, TextColumn, TimeElapsedColumn

from ..engine.job import ENGINES
from .common import choices
from .progress import ProgressReport, plural

if TYPE_CHECKING:
    from ..engine.job import Job
    from ..engine.ray_engine import UnitOutcome
    from ..engine.units import Plan
    from ..outputs.dataset import DatasetOutput

SCALE_PANEL = "Scaling out (Ray)"

Engine = choices("Engine", ENGINES)


EngineOpt = Annotated[
    Engine,
    typer.Option(
        "--engine",
        help="local: this machine. ray: a Ray cluster (pip install 'ramtag\\[ray]'); --out is then a "
        "folder of Parquet parts, one per tar shard or per --save-every image files, resumable by part.",
        rich_help_panel=SCALE_PANEL,
    ),
]
AddressOpt = Annotated[
    Optional[str],
    typer.Option(
        "--address",
        help="Ray cluster to join: auto (the one `ray start` runs here) or ray://HOST:PORT "
        "(default: RAY_ADDRESS, else a local Ray started for this run).",
        rich_help_panel=SCALE_PANEL, show_default=False,
    ),
]
GpusOpt = Annotated[
    Optional[float],
    typer.Option(
        "--num-gpus-per-worker", min=0.0,
        help="GPUs per Ray actor (default: 1 when the cluster has GPUs, else 0: CPUs).",
        rich_help_panel=SCALE_PANEL, show_default=False,
    ),
]
ConcurrencyOpt = Annotated[
    Optional[int],
    typer.Option(
        "--concurrency", min=1,
        help="Ray actors, each holding the model (default: all the cluster's GPUs, or its CPU "
        "cores, 1 + --workers cores per actor).",
        rich_help_panel=SCALE_PANEL, show_default=False,
    ),
]


def run_on_ray(job: Job, *, quiet: bool, verbose: bool, started: float) -> None:
    """Run ``job`` on a Ray cluster and say how it went; exit 1 if a shard could not be read."""
    from ..engine.cluster import ClusterEvents, run_job_on_ray

    class Events(ClusterEvents):
        def warning(self, path: Path, why: str) -> None:
            if not quiet:
                report.say(f"warning: {path}: {why}")

        def planned(self, plan: Plan, output: DatasetOutput, actors: int) -> None:
            report.plan = plan
            report.start(output, actors)
            report.begin()

        def unit(self, outcome: UnitOutcome) -> None:
            report.advance(outcome)

    report = _UnitReport(quiet=quiet, verbose=verbose, started=started)
    report.auto_precision = job.model.precision == "auto"
    try:
        done = run_job_on_ray(job, Events())
    finally:
        report.end()
    if done.interrupted:
        report.say(
            f"interrupted: {plural(len(done.output.parts), 'part')} saved in {done.output.dest}; "
            + ("run the same command without --overwrite to continue (with it, it would start over)"
               if job.outputs.overwrite else "run the same command again to continue")
        )
        raise typer.Exit(130)
    report.summary(done.output)
    if done.failures:
        raise typer.Exit(1)


class _UnitReport(ProgressReport):
    """Progress by unit (tar shard or chunk of files) and images; the summary; failed shards."""

    def __init__(self, *, quiet: bool, verbose: bool, started: float) -> None:
        super().__init__(quiet=quiet, verbose=verbose, started=started)
        self.plan: Plan | None = None
        self.failures = self.units = 0
        self.auto_precision = False  # --precision auto: which it chose is said, as a local run says it

    def columns(self) -> list[ProgressColumn]:
        return [
            TextColumn("parts, {task.fields[images]} images, {task.fields[rate]}"), TimeElapsedColumn(),
            TextColumn("[red]{task.fields[errors]}"),
        ]

    def fields(self) -> dict[str, Any]:
        return {"total": len(self.plan.units) if self.plan else None, "images": 0}

    def start(self, output: DatasetOutput, actors: int) -> None:
        if self.quiet:
            return
        plan = self.plan
        if plan.skipped_shards or plan.skipped_images:
            self.say(
                f"skipping {plural(plan.skipped_shards, 'shard')} and {plural(plan.skipped_images, 'image')} already in "
                f"{output.dest} (--overwrite redoes them)"
            )
        if plan.changed_shards:
            self.say(f"{plural(plan.changed_shards, 'tar shard')} changed since tagged: tagging again, "
                     "each part replaced whole")
        if plan.unseen_shards:
            first = output.done_shards[plan.unseen_shards[0]].name
            self.say(f"{plural(len(plan.unseen_shards), 'tar shard')} in {output.dest} "
                     f"{'is' if len(plan.unseen_shards) == 1 else 'are'} not among this run's inputs (e.g. "
                     f"{plan.unseen_shards[0]}: deleted?): {'its part stays' if len(plan.unseen_shards) == 1 else 'their parts stay'}; "
                     f"delete a part file ({first}) to drop its rows")
        if not plan.units:
            self.say(f"nothing new to tag → {output.dest} ({plural(len(output.parts), 'part')})")
            return
        chosen = output.settings.get("precision")
        if self.auto_precision and chosen == "fp32":
            self.say("precision fp32 on the cluster's CPUs: the driver cannot tell whether they have native bf16 "
                     "(--precision bf16-mixed where they all do)")
        elif self.auto_precision and chosen:
            self.say(f"precision {chosen} on the cluster's GPUs (--precision fp32 for exact scores)")
        self.say(
            f"{plural(len(plan.units), 'part')} to tag ({plan.shards} tar shards, {plan.images} image files) "
            f"on {plural(min(actors, len(plan.units)), 'Ray actor')}"
        )

    def advance(self, outcome: UnitOutcome) -> None:
        self.units += 1
        what = outcome.unit.name or f"{len(outcome.unit.images)} image files"
        if outcome.part is None:
            self.failures += 1
            self.say(f"warning: {outcome.failure} (not saved; a re-run retries it)")
        else:
            self.images += outcome.part.rows
            self.errors += outcome.part.errors
            if self.verbose:
                self.say(
                    f"{what} → {outcome.part.name}: {plural(outcome.part.rows, 'image')}, "
                    f"{plural(outcome.part.errors, 'error')}, {outcome.seconds:.1f} s"
                )
        self.show(
            f"{self.units}/{len(self.plan.units)} parts, {self.images} images, "
            f"{self.rate():.1f} images/s, {plural(self.errors, 'error')}",
            completed=self.units, images=self.images,
        )

    def summary(self, output: DatasetOutput) -> None:
        if self.failures:
            self.say(
                f"{plural(self.failures, 'tar shard')} could not be read and "
                f"{'was' if self.failures == 1 else 'were'} not saved; run the same command again to retry "
                f"{'it' if self.failures == 1 else 'them'}"
            )
        if self.quiet or (self.plan is not None and not self.plan.units):  # "nothing new to tag" was said
            return
        self.say(
            f"{self.counts()} {self.timing()} → {output.dest} ({plural(len(output.parts), 'part')})"
        )
