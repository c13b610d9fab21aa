"""One unit of work tagged by the runner, exactly as a local run tags it, returned as Parquet bytes.

The same model loading (``local.tagger_for``), the same loop (``runner.run``), the same schema as the
local engine: only the output differs, a ``PartOutput`` built in memory and handed back whole, so
whoever commits it (the Ray driver) writes it in one go and the workers never touch the output folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..inputs.shards import ShardReadError
from .job import Job
from .units import WorkUnit

if TYPE_CHECKING:
    from ..tagger import Tagger


@dataclass(frozen=True)
class UnitResult:
    """A tagged unit: its part (``data``) and counts, or why it could not be read (``failure``:
    nothing is committed, so a re-run tries it again)."""

    data: bytes | None
    rows: int
    errors: int
    seconds: float
    failure: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)


class UnitTagger:
    """The model, loaded once, and the schema of every part it makes. ``job.model`` has its
    device and precision resolved already, so that every part records the same settings."""

    def __init__(self, job: Job, tagger: Tagger | None = None) -> None:
        from ..devices import default_batch_size
        from ..inputs.roots import Root
        from ..outputs.schema import schema_for, settings_of
        from .job import check_preprocess_device
        from .local import tagger_for

        self.job = job
        self.tagger = tagger if tagger is not None else tagger_for(job.model)
        check_preprocess_device(job.results.preprocess, self.tagger.device.type)
        roots = [Root(path, prefix) for path, prefix in job.roots] if job.roots else None
        self.roots = roots or []
        self.schema = schema_for(self.tagger, job.outputs.lang, job.outputs.all_scores, job.results, roots=roots)
        self.settings = settings_of(self.schema)
        self.batch_size = job.batch_size or default_batch_size(self.tagger.device)

    def tag(self, unit: WorkUnit) -> UnitResult:
        from ..outputs.dataset import PartOutput
        from .runner import run

        started = time.perf_counter()
        found = self.job.inputs
        refs = unit.refs(include=found.include, exclude=found.exclude, hidden=found.hidden, max_pixels=found.max_pixels)
        part = PartOutput(self.schema, self.roots)
        try:
            run(
                refs, self.tagger, part, batch_size=self.batch_size, workers=self.job.workers or 0,
                top_k=self.job.results.top_k, max_pixels=found.max_pixels, draft_decode=self.job.results.draft_decode,
                raw_decode=self.job.results.raw_decode, preprocessing=self.job.results.preprocess,
                upright=not self.job.results.ignore_orientation,
            )
        except ShardReadError as error:
            part.discard()
            return UnitResult(None, 0, 0, time.perf_counter() - started, str(error), self.settings)
        return UnitResult(part.data, part.rows, part.errors, time.perf_counter() - started, None, self.settings)
