"""What ``ramtag run`` says on stderr while the local engine runs: progress, skipped folders, bad
images, the precision ``auto`` chose, the summary."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.progress import ProgressColumn, TaskProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..engine.job import Job
from ..engine.local import RunEvents
from ..stopping import CtrlC
from .common import err_console
from .progress import ProgressReport, plural

if TYPE_CHECKING:
    from ..engine.local import LocalRun
    from ..outputs.base import Tee
    from ..outputs.file import ResumableOutput
    from ..pipeline import ImageRecord
    from ..tagger import Tagger


# Precisions whose matrix products a CPU may lack: (number format, the feature that has them, how
# much slower emulated, what to use instead).
_FP16 = ("fp16", "AVX-512 FP16", "many times", "use fp32, or bf16-mixed where the CPU has AMX or AVX-512 BF16")
_BF16 = ("bf16", "AMX or AVX-512 BF16", "several times", "use fp32 (what auto chooses here)")
_EMULATED = {"fp16": _FP16, "bf16": _BF16, "bf16-mixed": _BF16}


class RunReport(ProgressReport, RunEvents):
    """Everything a local run says on stderr: progress, skipped folders, bad images, the summary."""

    def __init__(self, job: Job, *, quiet: bool, verbose: bool, started: float) -> None:
        super().__init__(quiet=quiet, verbose=verbose, started=started)
        self.job = job
        self.count: int | None = None
        self.first_error = ""  # named in the summary when -v did not name every bad file
        self.file: ResumableOutput | None = None  # the --out file, once open
        self.stop = threading.Event()
        self.ctrl_c = CtrlC(self.stop, _say_stopping)

    @property
    def wants_total(self) -> bool:  # type: ignore[override]
        return not self.quiet

    def columns(self) -> list[ProgressColumn]:
        return [
            TaskProgressColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), TextColumn("[red]{task.fields[errors]}"),
        ]

    def fields(self) -> dict[str, Any]:
        return {"total": None}

    # -- the engine's events ---------------------------------------------------------------------

    def warning(self, path: Path, why: str) -> None:
        if not self.quiet:
            self.say(f"warning: {path}: {why}")  # said safe for a terminal

    def downloading(self, files: list[str], into: list[str]) -> None:
        if not self.quiet:  # the RAM++ weights are 3 GB: minutes, which must not look like a hang
            self.say(f"first use: downloading {', '.join(files)} into {' and '.join(into)}; later runs use these "
                     "copies (`ramtag models download` fetches them ahead)")

    def model_ready(self, tagger: Tagger) -> None:
        # said when auto chose other than exact fp32 (or with --verbose), once, before tagging starts
        exact = tagger.precision.name == "fp32"
        if self.job.model.precision == "auto" and not self.quiet and (self.verbose or not exact):
            from ..precision import why_auto

            self.say(f"precision {why_auto(tagger.precision, tagger.device)}")
        name = tagger.precision.name
        if name in _EMULATED and tagger.device.type == "cpu" and not self.quiet:
            from ..cpu import emulates_bf16, emulates_fp16

            kind, native, how, instead = _EMULATED[name]
            if (emulates_fp16 if kind == "fp16" else emulates_bf16)():
                self.say(f"warning: --precision {name} on this CPU: it has no native {kind} matrix products "
                         f"({native}), so they are emulated, {how} slower than fp32; {instead}")

    def opened(self, output: Tee) -> None:
        from ..outputs.file import ResumableOutput

        file = self.file = output.find(ResumableOutput)
        if file is not None and file.resumed and not self.quiet:
            if file.builds_on:
                what = "new, changed or failed" if file.index.rerun.retry_errors else "new or changed"
                kept = "sidecar or embedded keywords are" if self.job.outputs.embed else "sidecar is"
                also = f", or whose {kept} not up to date" if self.job.outputs.xmp or self.job.outputs.embed else ""
                holds = (f"{file.dest} and the unfinished run in {file.folder} hold {plural(file.resumed, 'row')} "
                         f"({file.saved_rows} saved by that run)" if file.saved_rows
                         else f"{file.dest} holds {plural(file.resumed, 'row')}")  # once its parts are in --out
                self.say(f"{holds}: tagging only what is {what}{also} (--overwrite redoes everything)")
            else:
                self.say(f"continuing the unfinished run: {plural(file.resumed, 'image')} saved in {file.folder}")
        if self.verbose:  # what benchmarks/startup.py compares with torch's own import time
            from ..version import IMPORTED_AT

            self.say(f"ready to tag {time.perf_counter() - IMPORTED_AT:.2f} s after start (imports, model, outputs)")
        self.begin()  # the bar starts after anything printed before it
        self.ctrl_c.install()  # while tagging, Ctrl-C saves the batch in hand

    def batch(self, records: list[ImageRecord]) -> None:
        for record in records:
            self.images += 1
            if record.error is not None:
                self.errors += 1
                if self.verbose:
                    self.say(f"{record.key}: {record.error}")
                elif self.errors == 1:
                    self.first_error = f"{record.key}: {record.error}"
        of = f"/{self.count}" if self.count is not None else ""
        self.show(
            f"{self.images}{of} {'image' if self.images == 1 and not of else 'images'}, {self.rate():.1f} images/s, "
            f"{plural(self.errors, 'error')}",
            completed=self.images, total=self.count,
        )

    def total(self, count: int) -> None:
        self.count = count

    def tagged(self) -> None:
        self.end()  # before the outputs are completed: a terminal table may be printed then

    # -- after the run ---------------------------------------------------------------------------

    def end(self) -> None:
        super().end()
        self.ctrl_c.remove()

    def stopped(self, file: ResumableOutput | None) -> NoReturn:
        """Ctrl-C or SIGTERM ended the run (``file``: the --out file, if any): what was saved, and
        how to go on; also after a second Ctrl-C, which stopped at once."""
        terminated = self.ctrl_c.received == signal.SIGTERM
        what = "terminated" if terminated else "interrupted"
        if file is None or not file.parts:
            self.say(what)
        else:
            self.say(f"{what}: {plural(file.saved_rows, 'image')} saved in {file.folder}; "
                     "run the same command again to continue")
        raise typer.Exit(128 + signal.SIGTERM if terminated else 130)

    def finished(self, done: LocalRun) -> None:
        from ..outputs.file import ResumableOutput

        result, file = done.result, done.output.find(ResumableOutput)
        if result.stopped:
            self.stopped(file)
        if not self.quiet:
            from ..outputs.embedded import EmbedWriter

            where = f" → {done.output.dest}" if done.output.dest is not None else ""
            embedded = done.output.find(EmbedWriter)
            read_only = embedded.read_only if embedded is not None else 0  # skipped, but not done: said apart
            if file is not None and file.resumed:
                found = result.images + result.skipped
                if result.images:
                    self.say(f"{rerun_summary(file, found, self.errors)} {self.timing()}{where}")
                else:
                    kept = f" (and {file.kept_errors} error {'row' if file.kept_errors == 1 else 'rows'} kept: " \
                        "--keep-errors)" if file.kept_errors else ""
                    self.say(f"nothing new to tag: {plural(found, 'image')} found, all unchanged{kept} "
                             f"({self.elapsed():.1f} s){where}")
                if file.stale:
                    self.say(stale_summary(file))
            elif self.images == 0 and (result.skipped or done.output.resumed):
                done_before = (result.skipped - read_only) or done.output.resumed
                self.say(f"nothing new to tag: {plural(done_before, 'image')} done already "
                         f"({self.elapsed():.1f} s){where}" if done_before else
                         f"nothing tagged ({self.elapsed():.1f} s){where}")
            else:
                self.say(f"{self.counts()} {self.timing()}{where}")
            if self.errors and not self.verbose:  # without -v the bad files were not named yet
                more = f"; -v lists all {self.errors}" if self.errors > 1 else ""
                self.say(f"e.g. {self.first_error}{more}")
            if self.verbose:
                timings = result.timings
                split = ", ".join(f"{name} {value:.2f} s" for name, value in timings.model_stages().items())
                stages = ", ".join(
                    f"{name} {value:.2f} s" + (f" ({split})" if name == "model" else "")
                    for name, value in timings.stages().items()
                )
                self.say(f"time per stage: {stages}")
                found = done.findings
                if found is not None and (found.skipped or found.hidden_images or found.hidden_folders or found.filtered):
                    self.say(f"not tagged from the folders walked: {found.why()}")
            self._said_where(done)
            for pattern in sorted(done.findings.unmatched if done.findings is not None else ()):
                hint = done.findings.case_hint(pattern) or (" (globs match the paths as the output has them, "  # type: ignore[union-attr]
                                                            "their folders, or a file or folder name)")
                self.say(f"warning: {pattern} matched no file{hint}")
            unread = done.findings.unread_shards(self.job.inputs.paths) if done.findings is not None else []
            if unread:
                self.say(f"{plural(len(unread), 'tar shard')} in folders walked for images "
                         f"{'was' if len(unread) == 1 else 'were'} not read (e.g. {unread[0]}): shards are read when "
                         "named as inputs, or from an input folder that holds shards and no images")
            skipped = result.skipped - read_only  # the read-only ones are said by _said_where
            if (self.job.outputs.xmp or self.job.outputs.embed) and self.job.outputs.out is None and skipped > 0:
                kept = "sidecar or embedded keywords are" if self.job.outputs.embed else "sidecar is"
                self.say(f"skipped {plural(skipped, 'image')} whose {kept} up to date")

    def _said_where(self, done: LocalRun) -> None:
        """How many photos and sidecars were written."""
        from ..outputs.embedded import EmbedWriter
        from ..outputs.sidecars import SidecarWriter

        embedded, sidecars = done.output.find(EmbedWriter), done.output.find(SidecarWriter)
        parts = []
        if embedded is not None and embedded.written:
            parts.append(f"keywords written into {plural(embedded.written, 'photo')}")
        if sidecars is not None and sidecars.written:
            parts.append(f"{plural(sidecars.written, 'XMP sidecar')} written"
                         + (" (for camera raws and formats without embedded XMP)" if embedded and not self.job.outputs.xmp
                            else ""))
        if sidecars is not None and sidecars.others_written:
            parts.append(f"{sidecars.others_written} of the other --xmp-naming, from an earlier run, updated too")
        if embedded is not None and embedded.read_only:
            parts.append(f"{plural(embedded.read_only, 'read-only photo')} not written into (chmod u+w lets ramtag "
                         + ("write keywords; their sidecars have them)" if self.job.outputs.xmp
                            else "write keywords; --xmp writes sidecars)"))
        if embedded is not None and embedded.refused:
            count = len(embedded.refused)
            parts.append(f"{plural(count, 'photo')} --embed could not write into (their sidecars have the keywords"
                         + (f"): {embedded.refused[0]}" + (f"; -v lists all {count}" if count > 1 else "")
                            if not self.verbose else ")"))
        if parts:
            self.say("; ".join(parts))
        if embedded is not None and self.verbose:
            for refused in embedded.refused:
                self.say(f"--embed: {refused}")
        if sidecars is not None and done.findings is not None and done.findings.orphans:
            from ..outputs.sidecars import holds_ramtag

            left = [path for path in done.findings.orphans if holds_ramtag(path)]
            if left:
                self.say(f"{plural(len(left), 'XMP sidecar')} with ramtag's tags {'has' if len(left) == 1 else 'have'} "
                         f"no image beside {'it' if len(left) == 1 else 'them'} any more (e.g. {left[0]}): kept; "
                         "'ramtag xmp clean FILE' takes ramtag's tags out")


def rerun_summary(file: ResumableOutput, found: int, errors: int) -> str:
    """``12 images found: 2 new, 1 changed (re-tagged), 1 retried after an error, 8 unchanged``
    (unchanged in ``--out``: a sidecar may have needed some of them all the same)."""
    from ..outputs.rerun import CHANGED, HASH, NEW, RETRY

    tally = file.tally
    unchanged = found - sum(tally.values())
    parts = [f"{tally[NEW]} new" if tally[NEW] else "", f"{tally[CHANGED]} changed (re-tagged)" if tally[CHANGED] else "",
             f"{tally[RETRY]} retried after an error" if tally[RETRY] else "",
             f"{tally[HASH]} re-tagged to record their SHA-256" if tally[HASH] else "",
             f"{unchanged} unchanged" if file.builds_on else f"{unchanged} tagged before it was stopped"]
    said = ", ".join(part for part in parts if part)
    kept = f" (and {file.kept_errors} error {'row' if file.kept_errors == 1 else 'rows'} kept: --keep-errors)" \
        if file.kept_errors else ""
    return f"{plural(found, 'image')} found: {said}; {plural(errors, 'error')}{kept}"


def stale_summary(file: ResumableOutput) -> str:
    count, first = len(file.stale), file.stale[0]
    rows = "row names a file" if count == 1 else "rows name files"
    if file.pruned:
        return f"{count} {rows} no longer there: removed (--prune), e.g. {first}"
    return f"{count} {rows} no longer there (e.g. {first}): kept; --prune removes {'it' if count == 1 else 'them'}"


def _say_stopping(signum: int, waiting: bool) -> None:
    """The first Ctrl-C or SIGTERM: a batch being tagged is finished first; a wait is cut short."""
    if waiting:
        said = "stopping without waiting for the next image: what was read is tagged and saved"
    else:
        said = "stopping after this batch" + (" (Ctrl-C again to stop at once)" if signum == signal.SIGINT else "")
    err_console.print(said if signum == signal.SIGINT else f"terminated (SIGTERM): {said}", markup=False)
