"""The local engine: a ``Job`` run on this machine, from the checks to the finished outputs.

``run_job`` is the whole of ``ramtag run`` without a terminal: check the job (no torch yet), find the
inputs, load the model, open the outputs, run the loop (``runner.run``), and return what happened.
What a person should see is passed to ``RunEvents``, whose methods do nothing here; the command
line renders them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .job import Job, ModelOptions, OutputOptions

if TYPE_CHECKING:
    from ..inputs import ImageRef
    from ..inputs.findings import Findings
    from ..inputs.roots import KeyPlan, Root
    from ..inputs.shards import TarShard
    from ..outputs.base import Tee
    from ..outputs.file import ResumableOutput
    from ..pipeline import ImageRecord
    from ..tagger import Tagger
    from .runner import RunResult


class RunEvents:
    """What a run reports while it goes; override what you want to show."""

    wants_total = False  # whether to count the images beside the run (a second walk of the inputs)

    def warning(self, path: Path, why: str) -> None:
        """Discovery skipped something (an unreadable folder, a broken link, a duplicate)."""

    def downloading(self, files: list[str], into: list[str]) -> None:
        """These files are not cached: they are downloaded now, ``into`` these folders (first use)."""

    def model_ready(self, tagger: Tagger) -> None:
        """The model is loaded (``tagger.precision``: the precision resolved for its device)."""

    def opened(self, output: Tee) -> None:
        """The outputs are open (``output.resumed``: images already there)."""

    def batch(self, records: list[ImageRecord]) -> None:
        """One batch is tagged and written."""

    def total(self, count: int) -> None:
        """The number of images this run will tag, once a walk beside it has counted them."""

    def tagged(self) -> None:
        """The last batch is written; the outputs are completed next (or saved, after a stop)."""


@dataclass
class LocalRun:
    result: RunResult
    output: Tee
    tagger: Tagger
    findings: Findings | None = None  # what discovery left out (sidecars with no image among it)


def _continued(job: Job, output: Tee, events: RunEvents) -> None:
    """Said when this run continues an unfinished one that had other inputs: what that one had not
    tagged yet would otherwise be missing from the finished output without a word."""
    from ..inputs.fs import is_url
    from ..inputs.lists import is_stream
    from ..outputs.file import ResumableOutput

    file = output.find(ResumableOutput)
    if file is None:
        return
    found = job.inputs
    inputs = {"paths": sorted(path if is_url(path) else os.path.realpath(path) for path in found.paths),
              "files_from": None if found.files_from is None else "-" if is_stream(found.files_from)
              else os.path.realpath(found.files_from),
              "include": sorted(found.include), "exclude": sorted(found.exclude), "hidden": found.hidden}
    theirs = file.continues_other_inputs(inputs)
    if theirs is not None:
        given = " ".join(theirs.get("paths") or []) or f"--files-from {theirs.get('files_from')}"
        events.warning(file.folder, f"the unfinished run this one continues was given other inputs ({given}): "
                       f"the images it had not tagged yet will be missing from {file.dest.name} (Ctrl-C now and "
                       "run that command again to finish it first, or pass --overwrite to start over)")


def run_job(job: Job, *, events: RunEvents | None = None, stop: threading.Event | None = None) -> LocalRun:
    """Run ``job`` here. Mistakes in it fail before anything heavy is imported or loaded."""
    from ..devices import default_batch_size
    from ..inputs import discover
    from ..inputs.findings import Findings, some_images

    job.check()
    if job.cluster.engine != "local":
        raise UsageError("run_job runs the local engine; --engine ray goes through ramtag.engine.cluster")
    events = events or RunEvents()
    found = job.inputs
    plans: list[KeyPlan] = []
    recorded = _recorded_roots(job)
    shards = _UnchangedShards(job.outputs)
    refs = discover(  # checks that the inputs exist, before the model loads
        input_paths(found.paths), files_from=found.files_from, include=found.include, exclude=found.exclude,
        hidden=found.hidden, max_pixels=found.max_pixels, on_error=events.warning, findings=(findings := Findings()),
        recorded=recorded, on_plan=plans.append, unchanged=shards,
    )
    if not _builds_on(job):  # none at all: said now, before the model loads (a re-run may prune)
        refs = some_images(refs, findings, found.paths)
    for root in recorded:  # a moved archive: its photos would be tagged again beside their old rows
        if not os.path.exists(root.path):
            events.warning(Path(root.path), f"a folder of {Path(job.outputs.out or '').name}'s rows, not there any "
                           "more (moved? a drive not mounted?): its rows are kept, and photos of it found "
                           "elsewhere are tagged again under new keys")
    from ..model.needed import check_model_files

    model = job.model  # files missing offline: all of them said now, before torch is imported
    fetched = check_model_files(model.checkpoint, model=model.kind, tag_list=model.tag_list,
                                tag_list_zh=model.tag_list_zh, thresholds=model.thresholds)
    if fetched:
        events.downloading([f"{item.what} ({item.name})" for item in fetched], sorted({item.looked for item in fetched}))
    if model.tags is None:  # mistakes in the vocabulary files and --only-tags, before torch is imported
        _check_vocabulary(model, job.outputs.lang)
    if job.outputs.out is not None:  # another run writing the same output: said before the model loads
        from ..outputs.journal import check_unlocked

        check_unlocked(Path(job.outputs.out))
    from ..outputs.rerun import Rerun
    from ..outputs.schema import schema_for
    from ..outputs.targets import open_outputs
    from .runner import run  # torch comes with it: only once the job and its inputs are known to be right
    from ..devices import resolve_device
    from .job import check_preprocess_device

    check_preprocess_device(job.results.preprocess, resolve_device(job.model.device).type)
    tagger = tagger_for(job.model)
    events.model_ready(tagger)
    check_names(tagger, job.outputs.lang)
    schema = schema_for(tagger, job.outputs.lang, job.outputs.all_scores, job.results, roots=plans[0].table)
    options = job.outputs
    rerun = Rerun(retry_errors=options.retry_errors, prune=options.prune, by_content=options.content_hash,
                  file_of=plans[0].file_of, whole_shards=not (found.include or found.exclude),
                  shard_folders=frozenset(os.path.realpath(path) for path in found.paths if os.path.isdir(path)),
                  hidden=found.hidden)
    with open_outputs(job.outputs, schema, warn=events.warning, rerun=rerun) as output:
        events.opened(output)
        _continued(job, output, events)
        shards.open(output)
        counting = _counter(job, output, events, plans[0].table)

        def batch(number: int, records: list[ImageRecord]) -> None:
            events.batch(records)
            if number == 1 and counting is not None:  # only once the decoding workers are forked
                counting.start()

        result = run(
            refs, tagger, output, batch_size=job.batch_size or default_batch_size(tagger.device),
            workers=job.workers, top_k=job.results.top_k, max_pixels=found.max_pixels,
            draft_decode=job.results.draft_decode, raw_decode=job.results.raw_decode,
            preprocessing=job.results.preprocess, upright=not job.results.ignore_orientation,
            content_hash=options.content_hash, stop=stop, on_batch=batch,
            on_tagged=events.tagged,
        )
    return LocalRun(result, output, tagger, findings)


class _UnchangedShards:
    """Asked by discovery before it opens a tar shard: the keys of its members when ``--out`` holds
    them all from a read of this very version (``outputs.shardversions``), so it is not read."""

    def __init__(self, options: OutputOptions) -> None:
        from ..outputs.formats import FORMATS, format_for

        self.file: ResumableOutput | None = None
        # Only a file a later run builds on records versions: nothing to ask about without one.
        self.opened = options.out is None or not FORMATS[format_for(Path(options.out), options.format)].can_continue
        self.early: dict[str, dict[str, str]] = {}  # read before the output opened (to check for images)

    def open(self, output: Tee) -> None:
        from ..outputs.file import ResumableOutput

        self.file, self.opened = output.find(ResumableOutput), True
        if self.file is not None:
            self.file.shard_versions.found.update(self.early)

    def __call__(self, shard: TarShard) -> list[str] | None:
        from ..outputs.shardversions import ShardVersions

        if self.file is None:
            if not self.opened:
                self.early.setdefault(shard.name, ShardVersions.take(shard))
            return None
        return self.file.shard_versions.unchanged(shard, self.file.index)


def _builds_on(job: Job) -> bool:
    """Whether the run adds to an existing ``--out`` (where finding no image is news, not a mistake)."""
    out = job.outputs.out
    return out is not None and not job.outputs.overwrite and Path(out).is_file()


def _recorded_roots(job: Job) -> list[Root]:
    """The folders an existing ``--out`` was keyed by, so this run keys them the same way."""
    out = job.outputs.out
    if out is None or job.outputs.overwrite or not (os.path.exists(out) or os.path.exists(f"{out}.parts")):
        return []  # nothing to read (and pyarrow not imported for it)
    from ..outputs.file import recorded_roots

    return recorded_roots(Path(out))


def tagger_for(model: ModelOptions) -> Tagger:
    """The model, vocabulary, device and precision a job names, open-set tags included."""
    from ..loading import load_tagger

    return load_tagger(
        model.checkpoint, model=model.kind, tag_list=model.tag_list, tag_list_zh=model.tag_list_zh,
        thresholds=model.thresholds, threshold=model.threshold, device=model.device, precision=model.precision,
        only_tags=list(model.only_tags) if model.only_tags is not None else None,
        tags=model.tags, vocab=model.vocab, text_encoder=model.text_encoder,
    )


def _check_vocabulary(model: ModelOptions, lang: str) -> None:
    from ..vocabulary import prepare_vocabulary

    vocabulary = prepare_vocabulary(
        tag_list=model.tag_list, tag_list_zh=model.tag_list_zh, thresholds=model.thresholds,
        threshold=model.threshold, only_tags=list(model.only_tags) if model.only_tags is not None else None,
    ).vocabulary
    if lang != "en" and vocabulary.tags_zh is None:
        raise UsageError(f"--lang {lang} needs Chinese tag names: pass --tag-list-zh")


def check_names(tagger: Tagger, lang: str) -> None:
    """Chinese names are asked for but the vocabulary has none (``Job.check`` catches the usual
    cases before loading; a checkpoint's own vocabulary can only be seen once it is loaded)."""
    if lang != "en" and tagger.vocabulary.tags_zh is None:
        raise UsageError(f"--lang {lang} needs Chinese tag names: pass --tag-list-zh")


def input_paths(paths: tuple[str, ...]) -> list[str | Path]:
    """A URL stays a string; a path is a Path, so its key is spelled as before (a/./b.jpg → a/b.jpg)."""
    from ..inputs.fs import is_url

    return [path if is_url(path) else Path(path) for path in paths]


class _Uncountable(Exception):
    """A tar shard or URL among listed files: counting would read it all, so there is no total."""


def _counter(job: Job, output: Tee, events: RunEvents, roots: list[Root]) -> threading.Thread | None:
    """A walk beside the run that counts what it will tag, for a progress total; only where the
    inputs are cheap to walk again (local folders and files, not stdin, tar shards or URLs)."""
    from ..inputs import discover_items, is_plain_input, select
    from ..inputs.lists import is_stream
    from ..inputs.identity import stamped

    found = job.inputs
    if not events.wants_total or (found.files_from is not None and is_stream(found.files_from)) \
            or not all(is_plain_input(path) for path in found.paths):
        return None
    if job.outputs.content_hash:
        return None  # counting would read every file a second time

    def plain() -> Iterator[ImageRef]:
        from ..inputs import ImageRef

        walked = discover_items(input_paths(found.paths), files_from=found.files_from, hidden=found.hidden,
                                recorded=roots)  # keyed as the run keys them
        for item in walked:
            if not isinstance(item, ImageRef) or item.source is not None:
                raise _Uncountable
            yield stamped(item)  # size and time: a changed file counts

    def count() -> None:
        try:
            events.total(sum(1 for ref in select(plain(), found.include, found.exclude) if output.counts(ref)))
        except (_Uncountable, OSError, UsageError):
            pass

    return threading.Thread(target=count, name="ramtag-count", daemon=True)
