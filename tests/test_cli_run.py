"""``ramtag run`` end to end through the real command line, on the shared tiny RAM++ fixture."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from ramtag.cli.app import app
from ramtag.outputs import METADATA_KEY, Layout, output_schema
from ramtag.outputs.file import ResumableOutput

from test_pipeline import bad_folder  # tests/ is on sys.path (pytest rootdir import)

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def ramtag(*args: str | Path, input: str | None = None):
    result = runner.invoke(app, ["run", *map(str, args)], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _images(root: Path, names: list[str], size: tuple[int, int] = (24, 16)) -> Path:
    for number, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (number * 40 % 256, 90, 160)).save(path, "JPEG")
    return root


@pytest.fixture(scope="module")
def fixture_run(ramplus_tiny, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The whole fixture folder tagged once, with every optional column, for several tests to read."""
    out = tmp_path_factory.mktemp("run") / "tags.parquet"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAMTAG_CACHE", str(out.parent / "cache"))
        patch.setenv("RAMTAG_OFFLINE", "1")
        result = ramtag(
            ramplus_tiny.images, "--out", out, "--all-scores", "--lang", "both",
            "--workers", "0", "--batch-size", "5", *ramplus_tiny.cli_args(),
        )
    return out, result


def test_one_row_per_image_with_the_official_scores(fixture_run, ramplus_tiny) -> None:
    out, result = fixture_run
    assert result.exit_code == 0, result.output
    expected = ramplus_tiny.expected["images"]
    frame = pd.read_parquet(out)
    assert sorted(frame["path"]) == sorted(expected)
    thresholds = np.loadtxt(ramplus_tiny.thresholds, dtype=np.float32)
    vocabulary = ramplus_tiny.tags.read_text(encoding="utf-8").split()
    for _, row in frame.iterrows():
        want = expected[row["path"]]
        np.testing.assert_allclose(row["all_scores"], want["scores"], atol=1e-4)
        assert sorted(row["tags"]) == sorted(want["tags"])
        assert sorted(row["tags_zh"]) == sorted(want["tags_chinese"])
        for tag, score in zip(row["tags"], row["scores"]):
            assert score >= thresholds[vocabulary.index(tag)]
        assert list(row["scores"]) == sorted(row["scores"], reverse=True)
        assert pd.isna(row["error"]) and row["width"] > 0 and row["height"] > 0
    assert "9 images: 9 tagged, 0 errors" in result.stderr
    assert str(out) in result.stderr


def test_parquet_carries_provenance_and_answers_duckdb(fixture_run, ramplus_tiny) -> None:
    out, _ = fixture_run
    meta = json.loads(pq.read_metadata(out).metadata[METADATA_KEY.encode()])
    assert meta["model_kind"] == "ram_plus"
    assert meta["vocabulary"][:2] == ["cat", "dog"] and len(meta["thresholds"]) == 16
    assert meta["input_size"] == 384 and meta["precision"] == "fp32" and meta["checkpoint_sha256"]
    schema = pq.read_schema(out)
    kind = schema.field("all_scores").type
    assert pa.types.is_fixed_size_list(kind) and kind.list_size == 16 and kind.value_type == pa.float32()
    cats = duckdb.sql(f"SELECT path FROM '{out}' WHERE list_contains(tags, 'cat') ORDER BY path").fetchall()
    expected = ramplus_tiny.expected["images"]
    assert [path for (path,) in cats] == sorted(name for name, e in expected.items() if "cat" in e["tags"])


def test_bad_files_become_rows_and_the_run_succeeds(tmp_path: Path, ramplus_tiny) -> None:
    errors = bad_folder(tmp_path / "photos")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'gone.jpg'}\n")
    out = tmp_path / "tags.csv"
    result = ramtag(
        tmp_path / "photos", "--files-from", listing, "--out", out, "--max-pixels", "10000",
        "--workers", "0", "-v", *ramplus_tiny.cli_args(),
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    gone = str(tmp_path / "gone.jpg")
    folder = f"{(tmp_path / 'photos').as_posix()}/"  # with a list too, a folder's keys start with it
    errors = {folder + name: why for name, why in errors.items()}
    assert frame["path"].tolist() == [folder + "a_good.jpg", *sorted(errors), gone]  # folders, then the list
    errors[gone] = "not found"
    for _, row in frame.iterrows():
        if row["path"] in errors:
            assert errors[row["path"]] in row["error"]
            assert pd.isna(row["tags"]) and pd.isna(row["width"])
        else:
            assert pd.isna(row["error"]) and (row["width"], row["height"]) == (40, 30)
    assert "6 images: 1 tagged, 5 errors" in result.stderr
    assert "b_empty.jpg: empty file" in result.stderr  # --verbose names each bad file
    assert "time per stage: decode" in result.stderr
    assert "(transfer " in result.stderr and ", backbone " in result.stderr  # the model split
    assert "e.g. " not in result.stderr  # each was named already
    quiet = ramtag(tmp_path / "photos", "--out", tmp_path / "again.csv", "--max-pixels", "10000",
                   "--workers", "0", *ramplus_tiny.cli_args())
    assert "e.g. b_empty.jpg: empty file" in quiet.stderr and "-v lists all 4" in quiet.stderr  # without -v: one


def test_workers_give_the_same_rows(tmp_path: Path, ramplus_tiny) -> None:
    bad_folder(tmp_path / "photos")
    _images(tmp_path / "photos", ["f.jpg", "g.jpg"])
    rows = {}
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}.parquet"
        result = ramtag(
            tmp_path / "photos", "-o", out, "--workers", workers, "--batch-size", "2",
            "--max-pixels", "10000", "--all-scores", *ramplus_tiny.cli_args(),
        )
        assert result.exit_code == 0, result.output
        rows[workers] = pd.read_parquet(out)
    pd.testing.assert_frame_equal(rows["0"], rows["2"])
    assert rows["2"]["error"].notna().sum() == 4


def test_csv_round_trips_awkward_file_names(tmp_path: Path, ramplus_tiny) -> None:
    names = ["a, comma.jpg", 'b "quoted".jpg', "c\nnewline.jpg", "d 日本語 é.jpg", "sub,dir/e.jpg"]
    _images(tmp_path / "photos", names)
    out = tmp_path / "tags.csv"
    result = ramtag(tmp_path / "photos", "--out", out, "--lang", "zh", "--workers", "0", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert frame["path"].tolist() == sorted(names)
    assert list(frame.columns) == ["path", "tags", "scores", "tags_zh", "width", "height", "error",
                                   "file_size", "file_modified", "file_sha256", "root"]
    assert (frame["width"] == 24).all() and frame["error"].isna().all()
    for _, row in frame.iterrows():
        tags = [] if pd.isna(row["tags"]) else row["tags"].split("|")
        assert len(tags) == len(str(row["scores"]).split("|")) or not tags


def test_refuses_to_replace_what_it_cannot_add_to(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    from ramtag.engine import local

    photos = _images(tmp_path / "photos", ["a.jpg"])
    csv_out, foreign = tmp_path / "tags.csv", tmp_path / "other.parquet"
    csv_out.write_text("someone's data\n")
    pd.DataFrame({"x": [1]}).to_parquet(foreign)
    with monkeypatch.context() as patch:  # a CSV is never added to: refused before the model loads
        patch.setattr(local, "tagger_for", lambda *a, **k: pytest.fail("the model was loaded"))
        early = ramtag(photos, "--out", csv_out, *ramplus_tiny.cli_args())
        assert early.exit_code == 1 and early.stderr.strip() == (
            f"error: {csv_out} already exists; pass --overwrite to replace it (only Parquet outputs can be added to)")
        (tmp_path / "text.parquet").write_text("not parquet\n")
        early = ramtag(photos, "--out", tmp_path / "text.parquet", *ramplus_tiny.cli_args())
        assert early.exit_code == 1 and "text.parquet already exists and is not a Parquet file" in early.stderr
        early = ramtag(photos, "--out", foreign, *ramplus_tiny.cli_args())  # another program's Parquet
        assert early.exit_code == 1 and "other.parquet already exists and was not written by ramtag" in early.stderr
        # A photo is never the output, --overwrite or not: it was replaced by the tags of itself.
        photo = photos / "a.jpg"
        for args in (["--out", photo, "--format", "parquet", "--overwrite"], ["--out", photo, "--format", "csv"]):
            early = ramtag(photos, *args, *ramplus_tiny.cli_args())
            assert early.exit_code == 2 and f"--out {photo} is an image; name a new file" in early.stderr
        listed = tmp_path / "photo.data"
        listed.write_bytes(photo.read_bytes())
        early = ramtag(listed, "--out", listed, "--format", "csv", "--overwrite", *ramplus_tiny.cli_args())
        assert early.exit_code == 2 and "is one of the files to tag" in early.stderr
        assert photo.read_bytes() == listed.read_bytes()
    listed.unlink()
    (tmp_path / "text.parquet").unlink()
    for out in (csv_out, foreign):
        before = out.read_bytes()
        result = ramtag(photos, "--out", out, *ramplus_tiny.cli_args())
        assert result.exit_code == 1
        assert "already exists" in result.stderr and "--overwrite" in result.stderr
        assert out.read_bytes() == before
    result = ramtag(photos, "--out", csv_out, "--overwrite", "--workers", "0", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    assert pd.read_csv(csv_out)["path"].tolist() == ["a.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.parquet", "photos", "tags.csv"]


def test_two_folders_with_the_same_names_give_two_rows_each_resumable(
    tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "day1", ["x.jpg", "y.jpg"])
    _images(tmp_path / "day2", ["x.jpg"], size=(30, 20))
    args = ["day1", "day2", "--out", "tags.parquet", "--workers", "0", *ramplus_tiny.cli_args()]
    assert ramtag(*args).exit_code == 0
    frame = pd.read_parquet(tmp_path / "tags.parquet")
    assert frame["path"].tolist() == ["day1/x.jpg", "day1/y.jpg", "day2/x.jpg"]
    assert frame["width"].tolist() == [24, 24, 30]  # day2's x.jpg is its own row, not a duplicate
    _images(tmp_path / "day2", ["y.jpg"])
    result = ramtag(*args)
    assert "tags.parquet holds 3 rows" in result.stderr and "4 images found: 1 new, 3 unchanged" in result.stderr
    assert pd.read_parquet(tmp_path / "tags.parquet")["path"].tolist()[-1] == "day2/y.jpg"


def test_rerun_adds_only_new_images_and_refuses_other_settings(tmp_path: Path, ramplus_tiny) -> None:
    photos = _images(tmp_path / "photos", ["a.jpg", "c.jpg"])
    out = tmp_path / "tags.parquet"
    args = [photos, "--out", out, "--workers", "0", *ramplus_tiny.cli_args()]
    assert ramtag(*args).exit_code == 0
    first = pd.read_parquet(out)
    _images(photos, ["b.jpg"])
    result = ramtag(*args)
    assert result.exit_code == 0, result.output
    assert "holds 2 rows: tagging only what is new, changed or failed" in result.stderr
    assert "3 images found: 1 new, 2 unchanged; 0 errors" in result.stderr
    second = pd.read_parquet(out)
    assert second["path"].tolist() == ["a.jpg", "c.jpg", "b.jpg"]  # kept rows first, then new ones
    pd.testing.assert_frame_equal(second.iloc[:2], first)
    before = out.read_bytes()
    result = ramtag(*args, "--threshold", "0.3")
    assert result.exit_code == 1
    assert "other settings: thresholds" in result.stderr and "--overwrite" in result.stderr
    assert out.read_bytes() == before
    result = ramtag(*args, "--threshold", "0.3", "--overwrite")
    assert result.exit_code == 0, result.output
    assert sorted(pd.read_parquet(out)["path"]) == ["a.jpg", "b.jpg", "c.jpg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "tags.parquet"]


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_saves_the_batch_and_a_rerun_finishes(
    tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch, sent: int
) -> None:
    photos = _images(tmp_path / "photos", ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"])
    args = ["--workers", "0", "--batch-size", "2", "--all-scores", *ramplus_tiny.cli_args()]
    out = tmp_path / "tags.parquet"
    write = ResumableOutput.write

    def write_then_signal(self, batch):
        write(self, batch)
        signal.raise_signal(sent)  # as if pressed (or sent: timeout, docker stop) while the batch was in hand

    with monkeypatch.context() as patch:
        patch.setattr(ResumableOutput, "write", write_then_signal)
        result = ramtag(photos, "--out", out, *args)
    what = "interrupted" if sent == signal.SIGINT else "terminated"
    assert result.exit_code == 128 + sent
    assert f"{what}: 2 images saved in" in result.stderr
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # put back
    if sent == signal.SIGTERM:  # adding to a finished output: both said, neither counted as the other
        assert ramtag(photos, "--out", out, *args).exit_code == 0
        _images(photos, ["f.jpg", "g.jpg", "h.jpg"])
        with monkeypatch.context() as patch:
            patch.setattr(ResumableOutput, "write", write_then_signal)
            assert ramtag(photos, "--out", out, *args).exit_code == 128 + sent
        result = ramtag(photos, "--out", out, *args)
        assert f"{out} and the unfinished run in {out}.parts hold 7 rows (2 saved by that run)" in result.stderr
        assert "8 images found: 1 new, 7 unchanged" in result.stderr
        return
    assert "run the same command again to continue" in result.stderr
    assert not out.exists()
    result = ramtag(photos, "--out", out, *args)
    assert result.exit_code == 0, result.output
    assert "continuing the unfinished run: 2 images saved in" in result.stderr
    assert "5 images found: 3 new, 2 tagged before it was stopped" in result.stderr
    assert ramtag(photos, "--out", tmp_path / "whole.parquet", *args).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(tmp_path / "whole.parquet"))


def test_continuing_an_unfinished_run_with_other_inputs_is_said(
    tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its images not tagged yet would be missing from an output that looks finished."""
    big = _images(tmp_path / "big", ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    other = _images(tmp_path / "other", ["x.jpg"])
    args = ["--workers", "0", "--batch-size", "2", *ramplus_tiny.cli_args()]
    out = tmp_path / "tags.parquet"
    write = ResumableOutput.write

    def write_then_signal(self, batch):
        write(self, batch)
        signal.raise_signal(signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(ResumableOutput, "write", write_then_signal)
        assert ramtag(big, "--out", out, *args).exit_code == 130
    result = ramtag(other, "--out", out, *args)
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert f"the unfinished run this one continues was given other inputs ({big})" in said
    assert "the images it had not tagged yet will be missing from tags.parquet" in said
    with monkeypatch.context() as patch:  # the same inputs again: nothing to say
        patch.setattr(ResumableOutput, "write", write_then_signal)
        assert ramtag(big, "--out", tmp_path / "same.parquet", *args).exit_code == 130
    result = ramtag(big, "--out", tmp_path / "same.parquet", *args)
    assert result.exit_code == 0 and "other inputs" not in result.stderr


def test_a_second_run_on_the_same_output_is_refused(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    from ramtag.engine import local as local_engine

    photos = _images(tmp_path / "photos", ["a.jpg"])
    out = tmp_path / "tags.parquet"

    def no_model(_options):
        raise AssertionError("the model was loaded before the refusal")

    with ResumableOutput(out, "parquet", output_schema(Layout(16))):
        monkeypatch.setattr(local_engine, "tagger_for", no_model)  # said before the model loads
        result = ramtag(photos, "--out", out, *ramplus_tiny.cli_args())
    assert result.exit_code == 1
    assert "another ramtag run is writing" in result.stderr
    assert not out.exists()


def test_kill_9_mid_run_then_rerun_equals_an_uninterrupted_run(tmp_path: Path, ramplus_tiny) -> None:
    """A real ``python -m ramtag run`` killed with SIGKILL after some parts were saved."""
    photos = _images(tmp_path / "photos", [f"{i:02}.jpg" for i in range(10)])
    listing = "".join(f"{path}\n" for path in sorted(photos.iterdir()))
    args = ["--files-from", "-", "--save-every", "2", "--batch-size", "2", "--workers", "0", "--all-scores", *ramplus_tiny.cli_args()]
    out = tmp_path / "tags.parquet"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-m", "ramtag", "run", "--out", str(out), *args],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
    )
    # All but the last path: the run cannot finish before it is killed, however fast it is.
    process.stdin.write(listing.rsplit("\n", 2)[0] + "\n")
    process.stdin.flush()
    journal = tmp_path / "tags.parquet.parts" / "journal"
    deadline = time.monotonic() + 120
    while not journal.exists() or journal.read_text().count("\n") < 2:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no part was saved in time"
        time.sleep(0.02)
    time.sleep(0.3)  # let it get into the next batch
    process.kill()
    process.wait()
    process.stdin.close()
    process.stderr.close()
    assert not out.exists()
    result = ramtag("--out", out, *args, input=listing)
    assert result.exit_code == 0, result.output
    assert "continuing the unfinished run" in result.stderr
    assert ramtag("--out", tmp_path / "whole.parquet", *args, input=listing).exit_code == 0
    resumed, whole = pd.read_parquet(out), pd.read_parquet(tmp_path / "whole.parquet")
    assert resumed["path"].is_unique and len(resumed) == 10
    pd.testing.assert_frame_equal(resumed, whole)
    assert not (tmp_path / "tags.parquet.parts").exists()


@pytest.mark.parametrize("out_name", ["tags.parquet", "tags.csv"])
def test_a_folder_of_someone_elses_at_the_parts_name_is_refused_and_kept(
    tmp_path: Path, ramplus_tiny, out_name: str
) -> None:
    """Its files were deleted without a word, and a subfolder made the run fail with a traceback
    after removing the whole folder."""
    photos = _images(tmp_path / "photos", ["a.jpg"])
    out = tmp_path / out_name
    parts = tmp_path / f"{out_name}.parts"
    (parts / "sub").mkdir(parents=True)
    (parts / "mine.txt").write_text("precious")
    (parts / "sub" / "more.txt").write_text("also")
    result = ramtag(photos, "--out", out, "--workers", "0", *ramplus_tiny.cli_args())
    assert result.exit_code == 1 and "holds files ramtag did not write (e.g. mine.txt)" in result.stderr
    assert (parts / "mine.txt").read_text() == "precious" and (parts / "sub" / "more.txt").exists()
    assert not out.exists()
    (parts / "mine.txt").unlink()
    result = ramtag(photos, "--out", out, "--workers", "0", *ramplus_tiny.cli_args())
    assert result.exit_code == 1 and "(e.g. sub)" in result.stderr and (parts / "sub" / "more.txt").exists()
    (parts / "sub" / "more.txt").unlink()
    (parts / "sub").rmdir()  # an empty folder of that name is taken, and goes with the run
    (parts / ".DS_Store").write_bytes(b"\0")  # what Finder leaves in a folder it showed: no one's work
    assert ramtag(photos, "--out", out, "--workers", "0", *ramplus_tiny.cli_args()).exit_code == 0
    assert out.exists() and not parts.exists()


def test_stdout_is_json_lines_when_piped(tmp_path: Path, ramplus_tiny) -> None:
    image = _images(tmp_path, ["one.jpg"]) / "one.jpg"
    result = ramtag(image, "--top-k", "1", "--workers", "0", "-q", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert row["path"] == str(image)  # a file named directly keeps the path as given
    assert len(row["tags"]) <= 1 and row["width"] == 24 and row["error"] is None
    assert result.stderr == ""  # --quiet


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_or_a_closed_stdout_is_one_line(tmp_path: Path, ramplus_tiny) -> None:
    """`ramtag run photos > tags.jsonl` on a full disk, and a cron job's closed stdout, were tracebacks."""
    photos = _images(tmp_path / "photos", ["a.jpg"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    def run(redirect: str, *extra: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        script = f'exec "$0" -m ramtag run "$@" {redirect}'
        return subprocess.run(["bash", "-c", script, sys.executable, str(photos), "--workers", "0",
                               *ramplus_tiny.cli_args(), *extra], stderr=subprocess.PIPE, text=True,
                              env={**env, **(env_extra or {})}, timeout=300)

    for redirect, code, said in [("> /dev/full", 1, "cannot write the results to stdout (No space left on device)"),
                                 (">&-", 2, "stdout is closed: give --out FILE")]:
        done = run(redirect)
        assert done.returncode == code and said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert run(">&-", "--xmp", "--format", "csv").returncode == 2  # rows asked for on stdout all the same
    done = run("> /dev/full", "--format", "csv", env_extra={"PYTHONUNBUFFERED": "1"})  # the header at once
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    closed = run(">&-", "--xmp")
    assert closed.returncode == 0 and (photos / "a.jpg.xmp").exists(), closed.stderr  # the keywords need no stdout


def test_out_dash_is_stdout_also_beside_sidecars(tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = _images(tmp_path / "photos", ["a.jpg", "b.jpg"])
    monkeypatch.chdir(tmp_path)
    result = ramtag(photos, "--out", "-", "--workers", "0", "-q", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(line)["path"] for line in result.stdout.splitlines()) == ["a.jpg", "b.jpg"]
    with_xmp = ramtag(photos, "-o", "-", "--xmp", "--workers", "0", "-q", *ramplus_tiny.cli_args())
    assert with_xmp.exit_code == 0, with_xmp.output
    assert len(with_xmp.stdout.splitlines()) == 2 and (photos / "a.jpg.xmp").exists()
    assert not (tmp_path / "-").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give folders or image files"),
        (["{photos}", "--out", "{tmp}/tags.txt"], "--format"),
        (["{photos}", "--format", "parquet"], "needs a file"),
        (["{tmp}/nowhere"], "input not found"),
        (["{photos}", "--lang", "zh", "--checkpoint", "{ckpt}", "--tag-list", "{tags}"], "--tag-list-zh"),
    ],
)
def test_usage_errors_are_one_line(tmp_path: Path, ramplus_tiny, args: list[str], message: str) -> None:
    photos = _images(tmp_path / "photos", ["a.jpg"])
    fill = {"photos": photos, "tmp": tmp_path, "tags": ramplus_tiny.tags, "ckpt": ramplus_tiny.checkpoint}
    model = [] if "--tag-list" in args else ramplus_tiny.cli_args()
    result = ramtag(*[arg.format(**fill) for arg in args], *model)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_draft_decoding_is_recorded_and_keeps_the_file_size(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.jpg", "b.jpg"):
        coarse = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize((1600, 1200))
        coarse.save(photos / name, quality=90)
    args = [photos, "--workers", "0", "--all-scores", *ramplus_tiny.cli_args()]
    assert ramtag(*args, "--out", tmp_path / "exact.parquet").exit_code == 0
    draft_out = tmp_path / "draft.parquet"
    result = ramtag(*args, "--out", draft_out, "--draft-decode")
    assert result.exit_code == 0, result.output
    exact, draft = pd.read_parquet(tmp_path / "exact.parquet"), pd.read_parquet(draft_out)
    assert draft[["path", "width", "height"]].equals(exact[["path", "width", "height"]])
    assert draft["width"].tolist() == [1600, 1600]
    change = np.abs(np.stack(draft["all_scores"]) - np.stack(exact["all_scores"]))
    assert 0 < change.max() < 0.05  # other pixels, nearly the same scores
    metadata = json.loads(pq.read_schema(draft_out).metadata[METADATA_KEY.encode()])
    assert metadata["draft_decode"] is True
    assert "draft_decode" not in json.loads(pq.read_schema(tmp_path / "exact.parquet").metadata[METADATA_KEY.encode()])
    result = ramtag(*args, "--out", draft_out)  # the same output without draft decoding: refused
    assert result.exit_code == 1 and "other settings" in result.stderr


def test_file_and_folder_names_that_are_not_utf8_are_tagged_and_resumed(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    try:
        folder = photos / os.fsdecode(b"d\xfcr")  # Latin-1 names from an old camera card or zip file
        folder.mkdir(parents=True)
    except (OSError, UnicodeError):
        pytest.skip("this file system takes UTF-8 names only")
    _images(photos, [os.fsdecode(b"caf\xe9.jpg"), "plain.jpg", os.fsdecode(b"d\xfcr/x.jpg")])
    (photos / os.fsdecode(b"bad\xe9.jpg")).write_bytes(b"")
    keys = ["bad\\xe9.jpg", "caf\\xe9.jpg", "d\\xfcr/x.jpg", "plain.jpg"]  # bytes as \xNN escapes
    common = ["--workers", "0", *ramplus_tiny.cli_args()]
    for name in ("tags.parquet", "tags.csv", "tags.jsonl"):
        result = ramtag(photos, "--out", tmp_path / name, *common)
        assert result.exit_code == 0, result.output
    assert sorted(pd.read_parquet(tmp_path / "tags.parquet")["path"]) == keys
    assert sorted(pd.read_csv(tmp_path / "tags.csv")["path"]) == keys
    rows = [json.loads(line) for line in (tmp_path / "tags.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(row["path"] for row in rows) == keys
    assert [row["error"] is not None for row in sorted(rows, key=lambda row: row["path"])] == [True, False, False, False]

    out = tmp_path / "tags.parquet"
    again = ramtag(photos, "--out", out, "--keep-errors", *common)
    assert "nothing new to tag" in again.stderr and "tagging only what is new or changed (" in again.stderr, again.output
    _images(photos, ["new.jpg"])
    more = ramtag(photos, "--out", out, "--keep-errors", *common)
    assert "1 new, 4 unchanged; 0 errors (and 1 error row kept: --keep-errors)" in more.stderr, more.output
    (photos / "new.jpg").unlink()
    # Left out of this run but still there: kept by --prune; deleted: removed by it.
    kept = ramtag(photos, "--out", out, "--exclude", "caf*", "--prune", "--keep-errors", *common)
    assert kept.exit_code == 0 and sorted(pd.read_parquet(out)["path"]) == keys, kept.output
    (photos / os.fsdecode(b"caf\xe9.jpg")).unlink()
    (folder / "x.jpg").unlink()
    pruned = ramtag(photos, "--out", out, "--prune", "--keep-errors", *common)
    assert pruned.exit_code == 0 and sorted(pd.read_parquet(out)["path"]) == ["bad\\xe9.jpg", "plain.jpg"]
    # A folder input whose own name is not UTF-8: its keys start with it, escaped the same way.
    _images(folder, ["y.jpg"])
    two = tmp_path / "two.parquet"
    assert ramtag(folder, photos / "plain.jpg", "--out", two, *common).exit_code == 0
    assert sorted(pd.read_parquet(two)["path"]) == [str(photos / "d\\xfcr" / "y.jpg"), str(photos / "plain.jpg")]
    assert "nothing new to tag" in ramtag(folder, photos / "plain.jpg", "--out", two, *common).stderr
    # A name that really is ``caf\xe9.jpg`` would take the same key: one is tagged, the other said.
    clash = tmp_path / "clash"
    _images(clash, ["caf\\xe9.jpg", os.fsdecode(b"caf\xe9.jpg")])
    result = ramtag(clash, "--out", tmp_path / "clash.parquet", *common)
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(tmp_path / "clash.parquet")["path"].tolist() == ["caf\\xe9.jpg"]
    assert "its key caf\\xe9.jpg is" in result.stderr and "not tagged" in result.stderr


def test_the_python_api_returns_a_path_that_is_not_utf8_as_given(tmp_path: Path, tiny_tagger) -> None:
    try:
        photo = _images(tmp_path, [os.fsdecode(b"caf\xe9.jpg")]) / os.fsdecode(b"caf\xe9.jpg")
    except (OSError, UnicodeError):
        pytest.skip("this file system takes UTF-8 names only")
    result = tiny_tagger.tag(photo)
    assert result.error is None and result.path == os.fspath(photo)  # openable again, not the escaped key


def test_runs_never_import_pandas(tmp_path: Path, ramplus_tiny) -> None:
    # pyarrow's pa.array and its conversion of zoned times import pandas (0.4-0.6 s of every run)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.png"):
        Image.new("RGB", (40, 30), (200, 90, 20)).save(photos / name)
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    runs = [["--out", str(tmp_path / "t.parquet"), "--all-scores", "--lang", "both"],
            ["--out", str(tmp_path / "t.csv")], ["--out", str(tmp_path / "t.jsonl")], ["--format", "jsonl"], []]
    code = (
        "import os, sys\n"
        "from typer.testing import CliRunner\n"
        "from ramtag.cli.app import app\n"
        f"for extra in {runs!r}:\n"
        f"    result = CliRunner().invoke(app, ['run', {str(photos)!r}, '--workers', '0', *{ramplus_tiny.cli_args()!r}, *extra])\n"
        "    assert result.exit_code == 0, result.output\n"
        "    assert 'pandas' not in sys.modules, extra\n"
        f"os.remove({str(photos / 'b.png')!r})\n"  # a re-run that copies the kept rows over
        f"result = CliRunner().invoke(app, ['run', {str(photos)!r}, '--prune', *{ramplus_tiny.cli_args()!r}, *{runs[0]!r}])\n"
        "assert result.exit_code == 0 and 'removed' in result.stderr, result.output\n"
        "assert 'pandas' not in sys.modules, 'prune'\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = pd.read_parquet(tmp_path / "t.parquet")
    assert sorted(frame["path"]) == ["a.jpg", "broken.jpg"] and frame["width"].dtype == "Int32"
    assert pd.read_csv(tmp_path / "t.csv")["file_modified"].str.endswith("+00:00").all()


def test_a_folder_can_be_excluded_by_name_and_a_glob_that_matched_nothing_is_said(tmp_path: Path, ramplus_tiny) -> None:
    photos = _images(tmp_path / "photos", ["a.jpg", "drafts/b.jpg", "2024/drafts/c.jpg", "2024/d.jpg"])
    out = tmp_path / "tags.jsonl"
    result = ramtag(photos, "--out", out, "--exclude", "drafts", "--exclude", "d1/", "--workers", "0",
                    *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == ["a.jpg", "2024/d.jpg"]
    assert "warning: --exclude d1/ matched no file" in result.stderr
    assert "--exclude drafts matched" not in result.stderr
    upper = ramtag(photos, "--out", tmp_path / "jpg.jsonl", "--include", "*.JPG", "--workers", "0",
                   *ramplus_tiny.cli_args())  # the files are .jpg
    assert upper.exit_code == 1 and "4 images left out by --include/--exclude (globs are case-sensitive: " \
        "--include *.JPG matches files named in another case)" in upper.stderr
    prefixed = ramtag(photos, "--include", "photos/*.jpg", "--workers", "0", *ramplus_tiny.cli_args())
    said = " ".join(prefixed.stderr.split())  # the folder's name in the glob: keys are relative to it
    assert prefixed.exit_code == 1 and "--include photos/*.jpg matched no file (globs match paths as the output" in said
    assert "(see README, 'Usage', --include)" in said


def test_control_characters_in_file_names_reach_the_terminal_escaped(tmp_path: Path, ramplus_tiny) -> None:
    """A downloaded name may hold an escape sequence (clear the screen, recolour) or a carriage
    return (overwrite the line): messages and the terminal table show them as escapes, never raw."""
    import io

    import pyarrow as pa
    from rich.console import Console

    from ramtag.outputs.stdout import TerminalTable

    photos = tmp_path / "photos"
    _images(photos, ["good.jpg"])
    (photos / "\x1b[2J\x1b[31mevil\r.jpg").write_bytes(b"")
    out = tmp_path / "tags.parquet"
    for verbose in (["-v"], []):
        result = ramtag(photos, "--out", out, "--overwrite", "--workers", "0", *verbose, *ramplus_tiny.cli_args())
        assert result.exit_code == 0, result.output
        assert "\\x1b[2J\\x1b[31mevil\\r.jpg: empty file" in result.stderr
        assert "\x1b" not in result.stderr and "\r" not in result.stderr
    screen = io.StringIO()
    table = TerminalTable(Console(file=screen, force_terminal=True, width=200), "en")
    table.write(pa.table({"path": ["\x1b[2Jevil\r.jpg"], "error": ["empty file"], "tags": [[]], "scores": [[]],
                          "width": [None], "height": [None]}).to_batches()[0])
    table.close()
    assert "\\x1b[2Jevil\\r.jpg" in screen.getvalue() and "\x1b[2J" not in screen.getvalue()
    assert "error: empty file" in screen.getvalue()  # an error row says so in words, not by colour alone


@pytest.mark.skipif(os.name != "posix", reason="process groups and killpg are POSIX's")
def test_sigterm_to_the_process_group_saves_the_batch_with_decoding_workers(tmp_path: Path, ramplus_tiny) -> None:
    """`timeout`, systemd and Slurm send SIGTERM to the whole process group: the decoding workers
    outlive it for the batch in hand (they died, and the run with them, its work lost)."""
    photos = _images(tmp_path / "photos", [f"p{n:02d}.jpg" for n in range(40)])
    out = tmp_path / "tags.parquet"
    args = [sys.executable, "-m", "ramtag", "run", str(photos), "--out", str(out), "--workers", "1",
            "--batch-size", "1", "--save-every", "1", "--device", "cpu", *ramplus_tiny.cli_args()]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(args, start_new_session=True, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        journal = Path(f"{out}.parts") / "journal"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if journal.is_file() and journal.read_text(encoding="utf-8").count('"part"') >= 2:
                break
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "terminated: " in err and "Traceback" not in err
    again = ramtag(photos, "--out", out, "--workers", "0", *ramplus_tiny.cli_args())
    assert again.exit_code == 0, again.output
    assert sorted(pd.read_parquet(out)["path"]) == sorted(f"p{n:02d}.jpg" for n in range(40))


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The same JPEG, its image data untouched, with an EXIF orientation."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    payload = exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def test_ignore_orientation_reads_photos_as_the_official_code_does(tmp_path: Path, ramplus_tiny) -> None:
    """The official code does not turn a photo upright: its scores, on a photo EXIF marks as turned,
    are those of the pixels as stored."""
    from ramtag.inputs.jpeg import encoded_jpeg

    name = next(n for n in ramplus_tiny.expected["meta"]["images_order"] if n.endswith(".jpg"))
    photos = tmp_path / "photos"
    photos.mkdir()
    turned = with_orientation((ramplus_tiny.images / name).read_bytes(), 6)
    (photos / Path(name).name).write_bytes(turned)
    stored = Image.open(ramplus_tiny.images / name).size
    args = [photos, "--workers", "0", "--all-scores", "--precision", "fp32", *ramplus_tiny.cli_args()]
    assert ramtag(*args, "--out", tmp_path / "upright.parquet").exit_code == 0
    result = ramtag(*args, "--out", tmp_path / "stored.parquet", "--ignore-orientation")
    assert result.exit_code == 0, result.output
    upright, as_stored = pd.read_parquet(tmp_path / "upright.parquet"), pd.read_parquet(tmp_path / "stored.parquet")
    official = np.array(ramplus_tiny.expected["images"][name]["scores"])
    assert np.abs(np.array(as_stored["all_scores"][0]) - official).max() < 1e-4
    assert np.abs(np.array(upright["all_scores"][0]) - official).max() > 1e-3  # turned: other pixels
    assert (as_stored["width"][0], as_stored["height"][0]) == stored
    assert (upright["width"][0], upright["height"][0]) == stored[::-1]
    metadata = json.loads(pq.read_schema(tmp_path / "stored.parquet").metadata[METADATA_KEY.encode()])
    assert metadata["ignore_orientation"] is True
    result = ramtag(*args, "--out", tmp_path / "upright.parquet", "--ignore-orientation")
    assert result.exit_code == 1 and "ignore_orientation" in result.stderr  # no output of mixed readings
    jpeg = encoded_jpeg(turned, name, max_pixels=None, upright=False)  # --preprocess gpu's reading
    assert jpeg is not None and (jpeg.orientation, jpeg.width, jpeg.height) == (1, *stored)
    assert encoded_jpeg(turned, name, max_pixels=None).orientation == 6


def test_a_recorded_folder_that_is_gone_is_said(tmp_path: Path, ramplus_tiny) -> None:
    """A moved archive is tagged again under new keys, its old rows kept: said, not left to be found."""
    lib = _images(tmp_path / "lib", ["y2005/a.jpg"])
    args = ["--workers", "0", *ramplus_tiny.cli_args(), "--out", tmp_path / "tags.parquet"]
    assert ramtag(lib, *args).exit_code == 0
    assert "not there any more" not in ramtag(lib, *args).stderr
    lib.rename(tmp_path / "moved")
    result = ramtag(tmp_path / "moved", *args)
    assert result.exit_code == 0, result.output
    said = " ".join(result.stderr.split())
    assert f"warning: {lib}: a folder of tags.parquet's rows, not there any more (moved? a drive not mounted?)" in said


def test_a_second_ctrl_c_still_says_what_was_saved(tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    photos = _images(tmp_path / "photos", ["a.jpg", "b.jpg", "c.jpg"])
    out = tmp_path / "tags.parquet"
    write = ResumableOutput.write
    calls = []

    def write_then_stop_at_once(self, batch):
        write(self, batch)
        self.save()
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # what a second Ctrl-C does: no batch finished, no summary

    monkeypatch.setattr(ResumableOutput, "write", write_then_stop_at_once)
    result = ramtag(photos, "--out", out, "--workers", "0", "--batch-size", "1", *ramplus_tiny.cli_args())
    assert result.exit_code == 130
    assert f"interrupted: 2 images saved in {out}.parts; run the same command again to continue" in " ".join(
        result.stderr.split())


def test_verbose_says_what_a_walk_left_out(tmp_path: Path, ramplus_tiny) -> None:
    """A run that found images said nothing of the files it passed over: was the archive covered?"""
    photos = _images(tmp_path / "photos", ["a.jpg", ".hidden/b.jpg"])
    (photos / "scan.psd").write_bytes(b"8BPS")
    args = [photos, "--workers", "0", *ramplus_tiny.cli_args(), "--out", tmp_path / "t.csv"]
    said = " ".join(ramtag(*args, "-v").stderr.split())
    assert ("not tagged from the folders walked: 1 file skipped (.psd), not an image or camera raw extension; "
            "1 hidden folder left out (--hidden includes them)") in said
    assert "not tagged from" not in ramtag(*args, "--overwrite").stderr


def test_a_first_run_says_what_it_downloads_before_the_wait(
    tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first command of the README downloads 3 GB: a silent terminal for minutes looked hung."""
    ram_data = REPO.parent / "shared" / "ram_data"
    monkeypatch.setenv("RAMTAG_DATA_URL", f"{ram_data.as_uri()}/{{filename}}")
    monkeypatch.delenv("RAMTAG_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    photos = _images(tmp_path / "photos", ["a.jpg"])
    args = [photos, "--workers", "0", "--checkpoint", ramplus_tiny.checkpoint, "--out", tmp_path / "t.parquet"]
    result = ramtag(*args)  # the official lists: 4,585 tags for a checkpoint of 16, refused once fetched
    said = " ".join(result.stderr.split())
    assert "first use: downloading tag list (ram_tag_list.txt), Chinese tag list (ram_tag_list_chinese.txt), " \
        "thresholds (ram_tag_list_threshold.txt) into " in said
    assert "later runs use these copies" in said
    assert "first use" not in ramtag(*args).stderr  # cached now: nothing to say


def test_a_deleted_images_error_row_stays_until_prune(tmp_path: Path, ramplus_tiny) -> None:
    """Only a shard read whole again replaces its error row: a deleted image's is reported as gone."""
    photos = _images(tmp_path / "photos", ["good.jpg"])
    (photos / "bad.jpg").write_bytes(b"not a picture")
    args = [photos, "--workers", "0", *ramplus_tiny.cli_args(), "--out", tmp_path / "t.parquet"]
    assert ramtag(*args).exit_code == 0
    (photos / "bad.jpg").unlink()
    result = ramtag(*args)
    assert "1 row names a file no longer there (e.g. bad.jpg)" in " ".join(result.stderr.split())
    assert sorted(pd.read_parquet(tmp_path / "t.parquet")["path"]) == ["bad.jpg", "good.jpg"]
