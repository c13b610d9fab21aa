"""One unit of work tagged exactly as a local ``ramtag run`` tags it, returned as Parquet bytes.

The same ``load_tagger``, the same pipeline (decoding, preprocessing, batches: ``run_batches``),
the same schema and record batches as the local engine: only where the rows go differs. The part is
built in memory and handed back whole, so whoever commits it (the driver) writes it in one go, and
the workers need no access to the output folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..inputs import MAX_PIXELS
from ..inputs.shards import ShardReadError
from .units import WorkUnit

if TYPE_CHECKING:
    from ..tagger import Tagger


@dataclass(frozen=True)
class JobSettings:
    """What every worker needs to tag as the local engine would; plain values, sent as JSON.

    ``model`` holds ``load_tagger``'s keyword arguments, with ``device`` and ``precision`` already
    resolved by the driver so that every part records the same settings.
    """

    model: dict[str, Any]
    lang: str = "en"
    all_scores: bool = False
    top_k: int | None = None
    batch_size: int | None = None
    workers: int = 0
    max_pixels: int | None = MAX_PIXELS
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    hidden: bool = False
    draft_decode: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> JobSettings:
        data = json.loads(text)
        data["include"], data["exclude"] = tuple(data["include"]), tuple(data["exclude"])
        return cls(**data)


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
    """The model, loaded once, and the schema of every part it makes."""

    def __init__(self, job: JobSettings, tagger: Tagger | None = None) -> None:
        from ..outputs import schema_for
        from ..outputs.resume import settings_of
        from ..tagger import load_tagger

        self.job = job
        self.tagger = tagger if tagger is not None else load_tagger(**job.model)
        self.schema = schema_for(self.tagger, job.lang, job.all_scores, job.top_k, job.draft_decode)
        self.settings = settings_of(self.schema)
        if job.batch_size is not None:
            self.batch_size = job.batch_size
        else:
            from ..devices import default_batch_size

            self.batch_size = default_batch_size(self.tagger.device)

    def tag(self, unit: WorkUnit) -> UnitResult:
        from ..outputs import to_record_batch
        from ..outputs.tabular import ParquetSink
        from ..pipeline import run_batches

        started = time.perf_counter()
        job = self.job
        refs = unit.refs(include=job.include, exclude=job.exclude, hidden=job.hidden, max_pixels=job.max_pixels)
        stream = pa.BufferOutputStream()
        sink = ParquetSink(stream, self.schema)
        rows = errors = 0
        try:
            for records in run_batches(
                refs, self.tagger, batch_size=self.batch_size, workers=job.workers,
                top_k=job.top_k, max_pixels=job.max_pixels, draft_decode=job.draft_decode,
            ):
                sink.write(to_record_batch(records, self.schema))
                rows += len(records)
                errors += sum(record.error is not None for record in records)
        except ShardReadError as error:
            sink.abort()
            return UnitResult(None, 0, 0, time.perf_counter() - started, str(error), self.settings)
        sink.close()
        data = stream.getvalue().to_pybytes()
        return UnitResult(data, rows, errors, time.perf_counter() - started, None, self.settings)
