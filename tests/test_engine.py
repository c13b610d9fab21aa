"""The engine without the command line: a job run and resumed through the library, and every other
caller of the one tagging loop (Ray units, eval's scores, bench, the Python API) giving its rows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import REPO, OfficialFixture
from ramtag.engine.job import InputOptions, Job, ModelOptions, OutputOptions
from ramtag.engine.local import RunEvents, run_job
from ramtag.errors import UsageError
from ramtag.outputs import METADATA_KEY


def _model(fixture: OfficialFixture, **changes: str) -> ModelOptions:
    return ModelOptions(
        checkpoint=str(fixture.checkpoint), tag_list=str(fixture.tags), tag_list_zh=str(fixture.tags_zh),
        thresholds=str(fixture.thresholds), device="cpu", **changes,
    )


def _job(fixture: OfficialFixture, images: Path, out: Path, **outputs: object) -> Job:
    return Job(
        inputs=InputOptions(paths=(str(images),)), model=_model(fixture),
        outputs=OutputOptions(out=str(out), all_scores=True, **outputs), batch_size=2, workers=0,
    )


@pytest.fixture(scope="module")
def local_rows(ramplus_tiny: OfficialFixture, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """What the local engine writes for the fixture images: the rows every other caller must match."""
    out = tmp_path_factory.mktemp("local") / "tags.parquet"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAMTAG_CACHE", str(out.parent / "cache"))
        done = run_job(_job(ramplus_tiny, ramplus_tiny.images, out))
    assert (done.result.images, done.result.errors, done.result.stopped) == (9, 0, False)
    return pd.read_parquet(out).sort_values("path", ignore_index=True)


# Other batch sizes and kernels round fp32 differently: 1e-6 apart on this fixture, so equal means 1e-5.
CLOSE = 1e-5


def _same_rows(got: pd.DataFrame, want: pd.DataFrame, *, all_scores: bool = True) -> None:
    got = got.sort_values("path", ignore_index=True)
    assert got["path"].tolist() == want["path"].tolist()
    pd.testing.assert_frame_equal(got[["width", "height", "error"]], want[["width", "height", "error"]])
    for mine, theirs in zip(got.itertuples(), want.itertuples()):
        assert dict(zip(mine.tags, mine.scores)) == pytest.approx(dict(zip(theirs.tags, theirs.scores)), abs=CLOSE)
        if all_scores:
            np.testing.assert_allclose(mine.all_scores, theirs.all_scores, atol=CLOSE, rtol=0)


LIBRARY_RUN = textwrap.dedent("""
    import sys, threading
    from ramtag.engine.job import InputOptions, Job, ModelOptions, OutputOptions
    from ramtag.engine.local import RunEvents, run_job

    checkpoint, tags, thresholds, images, out, whole = sys.argv[1:]
    model = ModelOptions(checkpoint=checkpoint, tag_list=tags, thresholds=thresholds, device="cpu")

    def job(dest):
        return Job(inputs=InputOptions(paths=(images,)), model=model,
                   outputs=OutputOptions(out=dest, all_scores=True, save_every=2), batch_size=2, workers=0)

    class StopAfterTwoBatches(RunEvents):
        batches = 0
        def batch(self, records):
            self.batches += 1
            if self.batches == 2:
                stop.set()  # as a Ctrl-C would: the batch in hand is saved

    stop = threading.Event()
    first = run_job(job(out), events=StopAfterTwoBatches(), stop=stop)
    print("first", first.result.images, first.result.stopped)
    second = run_job(job(out))
    print("second", second.result.images, second.result.skipped, second.output.resumed)
    print("whole", run_job(job(whole)).result.images)
    print("typer", "typer" in sys.modules)
""")


def test_a_local_run_stopped_and_resumed_through_the_library_has_every_row_once(
    ramplus_tiny: OfficialFixture, tmp_path: Path, local_rows: pd.DataFrame
) -> None:
    out, whole = tmp_path / "tags.parquet", tmp_path / "whole.parquet"
    args = [ramplus_tiny.checkpoint, ramplus_tiny.tags, ramplus_tiny.thresholds, ramplus_tiny.images, out, whole]
    done = subprocess.run([sys.executable, "-c", LIBRARY_RUN, *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert said["first"] == "4 True"  # stopped after two batches of two, both saved
    assert said["second"] == "5 4 4"  # the other five tagged; the four saved ones skipped
    assert said["whole"] == "9" and said["typer"] == "False"  # no command line in the call path
    resumed, uninterrupted = pd.read_parquet(out), pd.read_parquet(whole)
    assert resumed["path"].is_unique and len(resumed) == 9
    pd.testing.assert_frame_equal(resumed, uninterrupted)
    assert not (tmp_path / "tags.parquet.parts").exists()


def test_run_job_reports_through_events_and_checks_the_job_first(ramplus_tiny: OfficialFixture, tmp_path: Path) -> None:
    class Seen(RunEvents):
        wants_total = True

        def __init__(self) -> None:
            self.batches: list[int] = []
            self.warnings: list[str] = []

        def warning(self, path: Path, why: str) -> None:
            self.warnings.append(why)

        def batch(self, records: list) -> None:
            self.batches.append(len(records))

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (32, 24), "olive").save(photos / name)
    (photos / "d.jpg").write_bytes(b"")
    seen = Seen()
    job = _job(ramplus_tiny, photos, tmp_path / "tags.csv")
    done = run_job(replace(job, inputs=replace(job.inputs, paths=(str(photos), str(photos / "a.jpg")))), events=seen)
    assert seen.batches == [2, 2] and seen.warnings == ["given twice among the inputs: tagged once"]
    assert (done.result.images, done.result.errors) == (4, 1) and done.output.dest == tmp_path / "tags.csv"
    with pytest.raises(UsageError, match="--threshold"):
        run_job(replace(job, model=replace(job.model, threshold=1.5)))


def test_a_ray_unit_gives_the_local_rows(ramplus_tiny: OfficialFixture, tmp_path: Path, local_rows: pd.DataFrame) -> None:
    import io

    from ramtag.engine.units import plan_units
    from ramtag.engine.worker import UnitTagger
    from ramtag.inputs import discover_items

    job = _job(ramplus_tiny, ramplus_tiny.images, tmp_path / "unused")
    [unit] = plan_units(discover_items([ramplus_tiny.images]), images_per_unit=100).units
    result = UnitTagger(job).tag(unit)  # the model loaded as an actor loads it, from the job
    assert (result.rows, result.errors, result.failure) == (9, 0, None)
    _same_rows(pq.read_table(io.BytesIO(result.data)).to_pandas(), local_rows)


def test_evals_scores_are_the_local_rows_and_remember_their_precision(
    ramplus_tiny: OfficialFixture, tmp_path: Path, local_rows: pd.DataFrame
) -> None:
    from ramtag.groundtruth import read_ground_truth
    from ramtag.scoring import labelled_images, score_images

    labels = tmp_path / "labels.csv"
    labels.write_text("path,tags\n" + "".join(f"{p},cat\n" for p in local_rows["path"]), encoding="utf-8")
    truth = labelled_images(read_ground_truth(labels), ramplus_tiny.images, None)
    model = replace(_model(ramplus_tiny), tag_list_zh=None, thresholds=None)
    first = score_images(truth, ramplus_tiny.images, None, model, batch_size=4, workers=0)
    assert (first.scored, first.reused) == (9, 0)
    table = pq.read_table(first.path)
    assert json.loads(table.schema.metadata[METADATA_KEY.encode()])["precision"] == "fp32"  # auto, resolved
    got = table.to_pandas().sort_values("path", ignore_index=True)  # other thresholds: compare scores
    assert got["path"].tolist() == local_rows["path"].tolist()
    np.testing.assert_allclose(np.stack(got["all_scores"]), np.stack(local_rows["all_scores"]), atol=CLOSE, rtol=0)
    again = score_images(truth, ramplus_tiny.images, None, model, workers=0)
    assert (again.scored, again.reused) == (0, 9)  # the same request: every score reused
    half = score_images(truth, ramplus_tiny.images, None, replace(model, precision="fp16"), batch_size=4, workers=0)
    assert (half.scored, half.reused) == (9, 0) and half.path != first.path  # fp32 scores are not fp16's
    assert json.loads(pq.read_schema(half.path).metadata[METADATA_KEY.encode()])["precision"] == "fp16"
    with pytest.raises(UsageError, match="other settings.*precision"):  # an explicit file made in fp32
        score_images(truth, ramplus_tiny.images, None, replace(model, precision="fp16"), scores=first.path, workers=0)


def test_bench_times_the_local_rows(ramplus_tiny: OfficialFixture, tmp_path: Path, local_rows: pd.DataFrame) -> None:
    from ramtag.bench import checkpoint_tagger, run_bench

    def load():
        return checkpoint_tagger(ramplus_tiny.checkpoint, tag_list=ramplus_tiny.tags,
                                 thresholds=ramplus_tiny.thresholds, device="cpu", precision="fp32")

    kept = tmp_path / "bench.parquet"
    result = run_bench(load, ramplus_tiny.images, batch_size=2, workers=0, warmup=1, keep_output=kept)
    assert (result.images, result.measured_images, result.errors) == (9, 7, 0)
    _same_rows(pd.read_parquet(kept), local_rows, all_scores=False)


def test_the_python_api_tags_one_path_or_many_and_keeps_going(
    ramplus_tiny: OfficialFixture, tiny_tagger, tmp_path: Path, local_rows: pd.DataFrame
) -> None:
    from ramtag.inputs import ImageDecodeError

    one = tiny_tagger.tag(str(ramplus_tiny.images / "demo4.jpg"))  # a path, not its characters
    want = local_rows.set_index("path").loc["demo4.jpg"]
    assert one.path == str(ramplus_tiny.images / "demo4.jpg") and one.error is None
    assert (one.width, one.height) == (want["width"], want["height"])
    np.testing.assert_allclose(one.all_scores, want["all_scores"], atol=CLOSE, rtol=0)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    paths = [ramplus_tiny.images / "demo2.jpg", broken, ramplus_tiny.images / "demo3.jpg"]
    results = tiny_tagger.tag(paths, batch_size=2)
    assert [r.path for r in results] == [str(p) for p in paths]
    assert results[1].error and "not an image" in results[1].error and results[1].tags == []
    assert results[0].tags and results[2].error is None  # one bad file loses nothing else
    with pytest.raises(ImageDecodeError, match="broken.jpg: not an image"):
        tiny_tagger.tag(paths, raise_errors=True)
    image = Image.open(ramplus_tiny.images / "demo4.jpg")
    assert tiny_tagger.tag(image).path is None and tiny_tagger.tag(image).tags == one.tags


def test_inputs_read_ahead_keep_their_order_and_errors_and_end_at_a_stop() -> None:
    """A stalled input (a tar shard over a dead connection) held the first Ctrl-C for a minute;
    raising from the signal handler instead could hang the process (a fork's lock never released).
    The inputs are read on a thread: a stop while the next one is awaited ends them there."""
    import signal
    import threading

    from ramtag.stopping import CtrlC, prefetched

    stop = threading.Event()
    assert list(prefetched(iter(range(50)), stop, depth=4)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("a bad input list")

    with pytest.raises(ValueError, match="a bad input list"):
        list(prefetched(failing(), stop))

    release = threading.Event()

    def stalled():
        yield "first"
        release.wait(30)  # the next input never comes
        yield "late"

    said: list[tuple[int, bool]] = []
    ctrl_c = CtrlC(stop, lambda signum, waiting: said.append((signum, waiting)))
    ctrl_c.install()
    try:
        stream = prefetched(stalled(), stop)
        assert next(stream) == "first"
        threading.Timer(0.3, lambda: signal.raise_signal(signal.SIGINT)).start()
        assert list(stream) == []  # ended by the stop: the input would have come, as "late", after 30 s
        assert said == [(signal.SIGINT, True)]
    finally:
        ctrl_c.remove()
        release.set()


def test_a_signal_the_process_was_started_ignoring_stays_ignored() -> None:
    """`nohup ramtag run ...` or a script's `ramtag run ... &`: SIGINT is ignored from the start."""
    import signal
    import threading

    from ramtag.stopping import CtrlC

    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        ctrl_c = CtrlC(threading.Event())
        ctrl_c.install()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == ctrl_c._handle
        ctrl_c.remove()
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, before)
