"""``ramtag run --engine ray``: the options, the run on a Ray cluster, and what it says on stderr."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.progress import ProgressColumn, TextColumn, TimeElapsedColumn

from ..errors import UsageError
from .common import err_console
from .progress import ProgressReport, plural

if TYPE_CHECKING:
    from ..engines.ray_engine import UnitOutcome
    from ..engines.units import Plan
    from ..outputs.dataset import DatasetOutput

SCALE_PANEL = "Scaling out (Ray)"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


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


def check_local(address: str | None, gpus: float | None, concurrency: int | None) -> None:
    given = [name for name, value in (("--address", address), ("--num-gpus-per-worker", gpus),
                                      ("--concurrency", concurrency)) if value is not None]
    if given:
        raise UsageError(f"{', '.join(given)} go with --engine ray")


def run_on_ray(
    *,
    discovery: dict[str, Any],
    out: Path | None,
    fmt: str | None,
    overwrite: bool,
    model: dict[str, Any],
    job: dict[str, Any],
    cluster: dict[str, Any],
    save_every: int,
    quiet: bool,
    verbose: bool,
    started: float,
) -> None:
    """Plan the units, tag them on the cluster, commit each part as it comes, say how it went."""
    if out is None:
        raise UsageError("--engine ray writes a folder of Parquet parts: add --out FOLDER")
    if fmt not in (None, "parquet"):
        raise UsageError(f"--engine ray writes Parquet only, not {fmt}")
    from ..inputs import discover_items

    def skipped(path: Path, why: str) -> None:
        if not quiet:
            err_console.print(f"warning: {path}: {why}", markup=False, soft_wrap=True)

    items = discover_items(**discovery, on_error=skipped)  # checks the inputs exist first
    from ..engines.ray_engine import RayEngine
    from ..engines.units import plan_units
    from ..engines.worker import JobSettings
    from ..outputs import schema_for
    from ..outputs.dataset import DatasetOutput
    from ..tagger import load_tagger

    with RayEngine(**cluster, workers=job.get("workers")) as engine:
        device, precision = engine.device_and_precision(model["device"], model["precision"])
        model = {**model, "device": device, "precision": precision}
        # The driver's own copy checks the files and gives the schema; the actors load theirs.
        tagger = load_tagger(**{**model, "device": "cpu"})
        if job["lang"] != "en" and tagger.vocabulary.tags_zh is None:
            raise UsageError(f"--lang {job['lang']} needs Chinese tag names: pass --tag-list-zh")
        schema = schema_for(tagger, job["lang"], job["all_scores"], job["top_k"], job["draft_decode"])
        del tagger
        with DatasetOutput.for_schema(out, schema, overwrite=overwrite) as output:
            plan = plan_units(
                items, done_shards=output.done_shards, done_keys=output.done_keys(),
                images_per_unit=save_every, include=job["include"], exclude=job["exclude"],
            )
            settings = JobSettings(model=model, **job)
            report = _UnitReport(plan, quiet=quiet, verbose=verbose, started=started)
            report.start(output, engine.concurrency)
            failures = _tag(engine, plan, settings, output, report)
    if failures:
        raise typer.Exit(1)


def _tag(engine: Any, plan: Plan, job: Any, output: DatasetOutput, report: _UnitReport) -> int:
    outcomes = engine.run(plan.units, job, output)
    try:
        with report:
            for outcome in outcomes:
                report.advance(outcome)
    except KeyboardInterrupt:
        try:
            outcomes.close()  # stops the Ray run; the parts already committed stay
        except Exception:  # noqa: BLE001 - Ctrl-C may have stopped a local Ray already
            pass
        err_console.print(
            f"interrupted: {plural(len(output.parts), 'part')} saved in {output.dest}; "
            "run the same command again to continue",
            markup=False, soft_wrap=True,
        )
        raise typer.Exit(130) from None
    report.summary(output)
    return report.failures


class _UnitReport(ProgressReport):
    """Progress by unit (tar shard or chunk of files) and images; the summary; failed shards."""

    def __init__(self, plan: Plan, *, quiet: bool, verbose: bool, started: float) -> None:
        super().__init__(quiet=quiet, verbose=verbose, started=started)
        self.plan = plan
        self.failures = self.units = 0

    def columns(self) -> list[ProgressColumn]:
        return [
            TextColumn("parts, {task.fields[images]} images, {task.fields[rate]}"), TimeElapsedColumn(),
            TextColumn("[red]{task.fields[errors]}"),
        ]

    def fields(self) -> dict[str, Any]:
        return {"total": len(self.plan.units), "images": 0}

    def start(self, output: DatasetOutput, actors: int) -> None:
        if self.quiet:
            return
        plan = self.plan
        if plan.skipped_shards or plan.skipped_images:
            self.say(
                f"skipping {plan.skipped_shards} shards and {plan.skipped_images} images already in "
                f"{output.dest} (--overwrite redoes them)"
            )
        if not plan.units:
            self.say("nothing new to tag")
            return
        self.say(
            f"{plural(len(plan.units), 'part')} to tag ({plan.shards} tar shards, {plan.images} image files) "
            f"on {min(actors, len(plan.units))} Ray actors"
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
                    f"{what} → {outcome.part.name}: {outcome.part.rows} images, "
                    f"{outcome.part.errors} errors, {outcome.seconds:.1f} s"
                )
        self.show(
            f"{self.units}/{len(self.plan.units)} parts, {self.images} images, "
            f"{self.rate():.1f} images/s, {self.errors} errors",
            completed=self.units, images=self.images,
        )

    def summary(self, output: DatasetOutput) -> None:
        if self.failures:
            self.say(
                f"{self.failures} tar shards could not be read and were not saved; "
                "run the same command again to retry them"
            )
        if self.quiet:
            return
        self.say(
            f"{self.images} images: {self.images - self.errors} tagged, {self.errors} errors "
            f"in {self.elapsed():.1f} s ({self.rate():.1f} images/s) → {output.dest} "
            f"({plural(len(output.parts), 'part')})"
        )
