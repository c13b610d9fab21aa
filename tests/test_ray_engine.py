"""``ramtag run --engine ray`` on a local Ray instance (2 CPUs, no GPU) with the tiny RAM++ fixture:
the same rows as the local engine, a Parquet dataset every reader sees as one table, and a run
interrupted then resumed by shard, with nothing redone and nothing duplicated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from ramtag.cli.app import app
from ramtag.inputs import discover
from ramtag.outputs import METADATA_KEY
from ramtag.outputs.dataset import DatasetOutput

from test_shards import _jpeg, write_shard

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory):
    """One small Ray instance for the module; its workers get the tests' isolated, offline caches."""
    home = tmp_path_factory.mktemp("ray-home")
    env = {"RAMTAG_CACHE": str(home / "ramtag"), "HF_HOME": str(home / "hf"),
           "HF_HUB_OFFLINE": "1", "RAMTAG_OFFLINE": "1"}
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024 * 1024, runtime_env={"env_vars": env})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def dataset(ramplus_tiny, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture's images as a folder (plus a broken file) and as three tar shards."""
    root = tmp_path_factory.mktemp("data")
    photos = root / "photos"
    shutil.copytree(ramplus_tiny.images, photos)
    (photos / "zz_empty.jpg").write_bytes(b"")
    images = sorted(path for path in ramplus_tiny.images.rglob("*") if path.is_file())
    for number in range(3):
        members = [(f"{number:05d}{index:04d}{path.suffix.lower()}", path.read_bytes())
                   for index, path in enumerate(images[number * 3 : number * 3 + 3])]
        members.append((f"{number:05d}0000.json", b"{}"))  # ignored: not an image
        if number == 2:
            members.append(("broken.jpg", _jpeg()[:200]))
        write_shard(root / "shards" / f"{number:05d}.tar", members)
    return root


def ramtag(*args: str | Path):
    result = CliRunner().invoke(app, ["run", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _inputs(root: Path) -> list[str]:
    return [str(root / "photos"), str(root / "shards" / "{00000..00002}.tar")]


def test_ray_rows_equal_the_local_engine(local_ray, dataset: Path, ramplus_tiny, tmp_path: Path) -> None:
    model = ["--all-scores", "--lang", "both", *ramplus_tiny.cli_args()]
    local = tmp_path / "local.parquet"
    assert ramtag(*_inputs(dataset), "--out", local, "--workers", "0", *model).exit_code == 0
    out = tmp_path / "tags"
    result = ramtag(*_inputs(dataset), "--engine", "ray", "--out", out, "--save-every", "4", *model)
    assert result.exit_code == 0, result.output
    assert "6 parts to tag (3 tar shards, 10 image files) on 2 Ray actors" in result.stderr
    assert "precision fp32 on the cluster's CPUs: the driver cannot tell whether they have native bf16" \
        in result.stderr  # auto chose, and says so as a local run does
    assert "20 images: 18 tagged, 2 errors" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "00000.parquet", "00001.parquet", "00002.parquet", "_ramtag",
        "images-000001.parquet", "images-000002.parquet", "images-000003.parquet"]
    want = pd.read_parquet(local).sort_values("path", ignore_index=True)
    got = pd.read_parquet(out).sort_values("path", ignore_index=True)  # the folder as one table
    assert got["path"].tolist() == want["path"].tolist()
    assert got["path"].str.startswith("0000").sum() == 10 and "00002.tar/broken" in set(got["path"])
    same = ["path", "width", "height", "error", "root"]  # root: the folder input a walked file came from
    pd.testing.assert_frame_equal(got[same], want[same])
    assert got["root"].notna().sum() == 10  # the photos folder's files; tar members have none
    worst = 0.0
    for mine, theirs in zip(got.itertuples(), want.itertuples()):
        if theirs.error is None:
            worst = max(worst, float(np.abs(mine.all_scores - theirs.all_scores).max()))
            assert dict(zip(mine.tags, mine.scores)) == pytest.approx(dict(zip(theirs.tags, theirs.scores)), abs=1e-5)
            assert sorted(mine.tags_zh) == sorted(theirs.tags_zh)
    assert worst <= 1e-5  # other batches than the local run's: fp32 rounds them differently
    local_meta = json.loads(pq.read_schema(local).metadata[METADATA_KEY.encode()])
    assert sorted(local_meta.pop("shards")) == ["00000.tar", "00001.tar", "00002.tar"]  # the Ray journal's
    for part in out.glob("*.parquet"):
        assert json.loads(pq.read_schema(part).metadata[METADATA_KEY.encode()]) == local_meta
        assert pq.read_schema(part).names == pq.read_schema(local).names
    [(count, unique)] = duckdb.sql(f"SELECT count(*), count(DISTINCT path) FROM '{out}/*.parquet'").fetchall()
    assert count == unique == 20


def test_an_interrupted_ray_run_resumes_without_redoing_or_duplicating(
    local_ray, dataset: Path, ramplus_tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def args(out: Path) -> list[str | Path]:
        return [*_inputs(dataset), "--engine", "ray", "--out", out, "--save-every", "5", "--concurrency", "1",
                *ramplus_tiny.cli_args()]

    out = tmp_path / "tags"
    commit = DatasetOutput.commit

    def commit_then_ctrl_c(self, *commit_args, **kwargs):
        commit(self, *commit_args, **kwargs)
        raise KeyboardInterrupt  # as if pressed right after the first part was saved

    with monkeypatch.context() as patch:
        patch.setattr(DatasetOutput, "commit", commit_then_ctrl_c)
        result = ramtag(*args(out))
    assert result.exit_code == 130, result.output
    assert "interrupted: 1 part saved in" in result.stderr and "run the same command again" in result.stderr
    [first] = [p for p in out.glob("*.parquet")]
    before = (first.stat().st_ino, first.stat().st_mtime_ns, first.read_bytes())
    first_rows = pq.read_table(first).column("path").to_pylist()

    committed: list[str] = []

    def counting_commit(self, shard, *rest, **kwargs):
        part = commit(self, shard, *rest, **kwargs)
        committed.append(part.name)
        return part

    monkeypatch.setattr(DatasetOutput, "commit", counting_commit)
    result = ramtag(*args(out))
    assert result.exit_code == 0, result.output
    skipped = "1 shards and 0 images" if first.name.startswith("0000") else "0 shards and 5 images"
    assert f"skipping {skipped} already in" in result.stderr
    assert first.name not in committed and len(committed) == 4  # the saved part was not redone
    assert (first.stat().st_ino, first.stat().st_mtime_ns, first.read_bytes()) == before
    paths = pd.read_parquet(out)["path"]
    every = {ref.key for ref in discover(_inputs(dataset))} | {"00002.tar/broken"}
    assert paths.is_unique and set(paths) == every and set(first_rows) <= every  # no duplicate, no gap
    result = ramtag(*args(out))  # all done: nothing to tag
    assert result.exit_code == 0 and "skipping 3 shards and 10 images" in result.stderr
    assert "nothing new to tag" in result.stderr and len(committed) == 4
    assert " tagged, " not in result.stderr  # no "0 images: 0 tagged" after it


def test_a_changed_shard_is_redone_and_its_part_replaced_whole(local_ray, ramplus_tiny, tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_shard(shards / "a.tar", [("x1.jpg", _jpeg()), ("x2.jpg", _jpeg())])
    write_shard(shards / "b.tar", [("y1.jpg", _jpeg())])
    out = tmp_path / "tags"
    args = [shards, "--engine", "ray", "--out", out, "--concurrency", "1", *ramplus_tiny.cli_args()]
    assert ramtag(*args).exit_code == 0
    untouched = (out / "b.parquet").stat().st_ino
    write_shard(shards / "a.tar", [("x1.jpg", _jpeg()), ("x3.jpg", _jpeg())])  # re-made: x2 gone, x3 new
    result = ramtag(*args)
    assert result.exit_code == 0, result.output
    assert "1 tar shard changed since tagged: tagging again" in result.stderr
    assert "skipping 1 shard and 0 images" in result.stderr
    assert sorted(p.name for p in out.glob("*.parquet")) == ["a.parquet", "b.parquet"]  # replaced, not added
    assert (out / "b.parquet").stat().st_ino == untouched
    assert sorted(pd.read_parquet(out)["path"]) == ["a.tar/x1", "a.tar/x3", "b.tar/y1"]
    assert "nothing new to tag" in ramtag(*args).stderr
    (shards / "b.tar").unlink()  # its rows stayed without a word
    result = ramtag(*args)
    assert "1 tar shard in " in result.stderr and "is not among this run's inputs (e.g. b.tar: deleted?): its part " \
        "stays; delete a part file (b.parquet) to drop its rows" in result.stderr.replace("\n", " "), result.stderr
    more = ramtag(*args[:-len(ramplus_tiny.cli_args())], "--workers", "64", *ramplus_tiny.cli_args())
    assert more.exit_code == 2 and "pass --workers" in more.stderr, more.output  # Ray waited for ever


def test_a_worker_that_never_started_is_one_line_not_rays_traceback() -> None:
    """An actor refused by the cluster (another auth token: a Ray that ramtag started left one
    behind) dies before running; there is no error of ramtag's inside to show, so say what to do."""
    from ramtag.engine.ray_engine import _unwrapped
    from ramtag.errors import RamtagError

    def rows():
        raise ray.exceptions.ActorDiedError()
        yield {}

    with pytest.raises(RamtagError, match=r"a Ray worker could not start \(.*\); `ray logs` on the cluster says why"):
        list(_unwrapped(rows()))
