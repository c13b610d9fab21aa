"""The one output protocol every run writes through, and the outputs that combine others.

An ``Output`` is told about each image twice: before tagging (``needs``: a re-run tags only what some
output still lacks) and after (``write_records``: it writes the records it needs). The runner
(``engine.runner``) drives it; the implementations are

- ``file.ResumableOutput``: a Parquet, CSV or JSON Lines file, crash-safe and resumable;
- ``stdout.StdoutOutput``: a table on a terminal, JSON Lines or CSV when piped;
- ``sidecars.SidecarWriter``: XMP sidecars beside the images;
- ``dataset.PartOutput``: one part of the Ray engine's dataset folder, built in memory on an actor;
- ``PerImageOutput`` (here): the base of the two that write for each image file (sidecars,
  ``embedded.EmbedWriter``), turning a failed write into that image's error record;
- ``Collected`` (here): the records in a list, for the Python API;
- ``Tee`` (here): several of them at once (``--xmp`` beside ``--out``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import pyarrow as pa

    from ..inputs import ImageRef
    from ..inputs.identity import Stamp
    from ..pipeline import ImageRecord

T = TypeVar("T")


class Output(Protocol):
    """Where a run's records go. Used as a context manager: leaving it releases what it holds."""

    dest: Path | None  # where the rows land, for the summary (None: stdout, sidecars)
    resumed: int  # images this output already holds from earlier runs

    def needs(self, item: ImageRef | ImageRecord) -> bool:
        """Whether this output still lacks this image (``item``: a ref or its record)."""

    def counts(self, ref: ImageRef) -> bool:
        """For a progress total counted while the run goes on: needed, or written by this run."""

    def write_records(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        """Write those of ``records`` this output needs; return all of them, an image whose writing
        failed here (a sidecar it cannot write) turned into an error record."""

    def save(self) -> None:
        """Make what was written durable (the run stops early: Ctrl-C)."""

    def finish(self) -> None:
        """Complete the output (the run tagged everything)."""

    def close(self) -> None:
        """Release locks and files; what ``finish`` did not complete stays resumable."""

    def __enter__(self) -> Output: ...

    def __exit__(self, *exc_info: object) -> None: ...


class BaseOutput:
    """What most outputs do by default: need everything, keep nothing to save, hold nothing."""

    dest: Path | None = None
    resumed = 0

    def needs(self, item: ImageRef | ImageRecord) -> bool:
        return True

    def counts(self, ref: ImageRef) -> bool:
        return self.needs(ref)

    def save(self) -> None:
        pass

    def finish(self) -> None:
        self.save()

    def close(self) -> None:
        pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class PerImageOutput(BaseOutput):
    """Base of the outputs that write into or beside each image file (sidecars, embedded keywords):
    ``update`` writes one image's result; one whose writing fails (``failure``) becomes an error
    record, worded by ``failed``. Each image is complete once written: nothing to save or finish."""

    failure: type[Exception] = Exception
    restamps = False  # writing changes the image file itself: its row records the file as written

    def handles(self, path: Path) -> bool:
        """Whether this output writes for this image (the others pass through untouched)."""
        return True

    def update(self, path: Path, result: Any, stamp: Stamp | None = None) -> object:
        """Write ``result`` for the image at ``path`` (``stamp``: that file's, when it was picked)."""
        raise NotImplementedError

    def failed(self, path: Path, error: Exception) -> str:
        return str(error)

    def write_records(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        out = []
        for record in records:
            if record.result is not None and record.path is not None and self.handles(record.path):
                try:
                    wrote = self.update(record.path, record.result, record.stamp)
                except self.failure as exc:
                    error = self.failed(record.path, exc)
                    record = replace(record, result=None, width=None, height=None, error=error)
                else:
                    if self.restamps and wrote and record.stamp is not None:
                        from ..inputs.identity import file_stamp

                        record = replace(record, stamp=file_stamp(record.path, content=record.stamp.sha256 is not None))
            out.append(record)
        return out


class RowOutput(BaseOutput):
    """Base of the outputs that write rows of the shared schema: a subclass writes Arrow batches
    (``write``); turning records into rows, and keeping to the ones it needs, happens here."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema

    def write_records(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        from .schema import to_record_batch

        rows = [record for record in records if self.needs(record)]
        if rows:
            self.write(to_record_batch(rows, self.schema))
        return list(records)

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError


class Collected(BaseOutput):
    """Every record in ``records``, in order: what ``Tagger.tag`` returns from."""

    def __init__(self) -> None:
        self.records: list[ImageRecord] = []

    def write_records(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        self.records.extend(records)
        return list(records)


class Tee:
    """Several outputs as one: an image is tagged when any of them needs it, and its record goes
    through them in order (sidecars first, so a sidecar that fails is an error row in the file)."""

    def __init__(self, outputs: Sequence[Output]) -> None:
        self.outputs = list(outputs)

    @property
    def dest(self) -> Path | None:
        return next((output.dest for output in self.outputs if output.dest is not None), None)

    @property
    def resumed(self) -> int:
        return max((output.resumed for output in self.outputs), default=0)

    def find(self, kind: type[T]) -> T | None:
        """The first output of this kind, if the run has one."""
        return next((output for output in self.outputs if isinstance(output, kind)), None)

    def needs(self, item: ImageRef | ImageRecord) -> bool:
        return any([output.needs(item) for output in self.outputs])  # each is asked: each keeps count

    def counts(self, ref: ImageRef) -> bool:
        return any(output.counts(ref) for output in self.outputs)

    def write_records(self, records: Sequence[ImageRecord]) -> list[ImageRecord]:
        out = list(records)
        for output in self.outputs:
            out = output.write_records(out)
        return out

    def save(self) -> None:
        for output in self.outputs:
            output.save()

    def finish(self) -> None:
        for output in self.outputs:
            output.finish()

    def close(self, *, failing: bool = False) -> None:
        """Close every output, even when one fails to; the first failure is raised after, unless
        the run is failing already (``failing``): then the error that stopped it is the one to see."""
        errors = []
        for output in self.outputs:
            try:
                output.close()
            except Exception as error:  # noqa: BLE001 - every output must get its chance to close
                errors.append(error)
        if errors and not failing:
            raise errors[0]

    def __enter__(self) -> Tee:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        self.close(failing=kind is not None)
