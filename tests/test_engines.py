"""What the Ray engine is built from, without Ray: work units, a unit tagged into a Parquet part,
and the dataset folder that commits parts and resumes by shard."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ramtag.engine.job import InputOptions, Job, OutputOptions
from ramtag.engine.units import WorkUnit, plan_units
from ramtag.engine.worker import UnitTagger
from ramtag.errors import OutputError, UsageError
from ramtag.inputs import ImageRef, discover_items
from ramtag.outputs import Layout, output_schema, read_metadata, to_record_batch
from ramtag.outputs.dataset import DatasetOutput, Part
from ramtag.outputs.formats import ParquetSink
from ramtag.outputs.schema import settings_of
from ramtag.pipeline import ImageRecord
from ramtag.inputs.shards import TarShard

from test_shards import _jpeg, sample_shards, write_shard

META = {"model_kind": "ram_plus", "checkpoint_sha256": "ab" * 32, "vocabulary": list("abcd"),
        "thresholds": [0.5] * 4, "input_size": 384, "precision": "fp32", "top_k": None}


def _part(keys: list[str], schema=None) -> bytes:
    schema = schema or output_schema(Layout(4), META)
    records = [ImageRecord(key, None, None, None, "bad") for key in keys]
    buffer = io.BytesIO()
    sink = ParquetSink(buffer, schema)
    sink.write(to_record_batch(records, schema))
    sink.close()
    return buffer.getvalue()


SETTINGS = settings_of(output_schema(Layout(4), META))


# -- planning ------------------------------------------------------------------------------------


def test_units_are_shards_then_chunks_of_files_and_skip_committed_work(tmp_path: Path) -> None:
    sample_shards(tmp_path / "shards", count=3)
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in "abcde":
        (photos / f"{name}.jpg").write_bytes(_jpeg())
    items = list(discover_items([tmp_path / "shards", photos]))
    plan = plan_units(items, images_per_unit=2)
    assert [unit.name for unit in plan.units] == ["00000.tar", "00001.tar", "00002.tar", None, None, None]
    p = f"{photos.as_posix()}/"  # two inputs: a folder's keys start with the folder
    assert [[ref.key for ref in unit.images] for unit in plan.units[3:]] == [[p + "a.jpg", p + "b.jpg"], [p + "c.jpg", p + "d.jpg"], [p + "e.jpg"]]
    done = {"00001.tar": Part("00001.parquet", "00001.tar", 2)}  # recorded without a version: not compared
    again = plan_units(items, done_shards=done, done_keys={p + "b.jpg"}, images_per_unit=2, exclude=["d.jpg"])
    assert [unit.name for unit in again.units] == ["00000.tar", "00002.tar", None, None]
    assert [[ref.key for ref in unit.images] for unit in again.units[2:]] == [[p + "a.jpg", p + "c.jpg"], [p + "e.jpg"]]
    assert (again.skipped_shards, again.skipped_images, again.shards, again.images) == (1, 1, 2, 3)
    for unit in plan.units:
        assert WorkUnit.from_json(unit.to_json()) == unit
    other = write_shard(tmp_path / "elsewhere" / "00001.tar", [("x.jpg", _jpeg())])
    with pytest.raises(UsageError, match="two tar shards are named 00001.tar"):
        plan_units([*items, TarShard(str(other), "00001.tar")])


def test_units_name_local_files_by_absolute_paths_for_workers_elsewhere(tmp_path: Path, monkeypatch) -> None:
    """A Ray actor runs in the folder `ray start` ran in: a relative path read there named nothing
    (every shard "cannot be read"); the keys stay as written."""
    sample_shards(tmp_path / "shards", count=1)
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(_jpeg())
    monkeypatch.chdir(tmp_path)
    sent = [unit.to_json() for unit in plan_units(list(discover_items(["shards/00000.tar", "photos/a.jpg"]))).units]
    monkeypatch.chdir(tmp_path / "photos")  # the worker's folder
    shard, images = (WorkUnit.from_json(text) for text in sent)
    assert shard.shard is not None and shard.shard.location == str(tmp_path / "shards" / "00000.tar")
    assert shard.name == "00000.tar" and len(list(shard.refs())) > 0
    assert images.images[0].path == tmp_path / "photos" / "a.jpg" and images.images[0].key == "photos/a.jpg"


def test_a_unit_is_tagged_like_a_local_run(tmp_path: Path, tiny_tagger, ramplus_tiny) -> None:
    [shard] = sample_shards(tmp_path, count=1, per_shard=3)
    job = Job(inputs=InputOptions(include=("*0001", "*0002")), outputs=OutputOptions(lang="both", all_scores=True), batch_size=2)
    worker = UnitTagger(job, tagger=tiny_tagger)
    result = worker.tag(WorkUnit(shard=TarShard(str(shard), shard.name)))
    assert (result.rows, result.errors, result.failure) == (2, 0, None)
    table = pq.read_table(io.BytesIO(result.data))
    assert table.column("path").to_pylist() == ["00000.tar/000000001", "00000.tar/000000002"]
    assert table.schema.names == worker.schema.names
    assert read_metadata(table.schema) == read_metadata(worker.schema) and read_metadata(table.schema)["vocabulary"]
    assert result.settings == settings_of(worker.schema)
    expected = tiny_tagger.tag([_decoded(_jpeg(color="blue"))])[0]  # member 1 of the shard
    # a batch of two against one image alone: fp32 rounds other batch shapes differently
    assert table.column("all_scores")[0].as_py() == pytest.approx(list(expected.all_scores), abs=1e-5)
    failed = worker.tag(WorkUnit(shard=TarShard(str(tmp_path / "gone.tar"), "gone.tar")))
    assert failed.data is None and "gone.tar: cannot read this tar shard" in failed.failure
    cut = tmp_path / "cut" / shard.name  # an interrupted download, cut between two members
    cut.parent.mkdir()
    whole = shard.read_bytes()
    cut.write_bytes(whole[: 512 + -(-len(_jpeg(color="red")) // 512) * 512])
    failed = worker.tag(WorkUnit(shard=TarShard(str(cut), cut.name)))  # not committed: a re-run reads it again
    assert failed.data is None and "cut short between two members" in failed.failure
    joined = tmp_path / "joined" / shard.name  # two archives end to end: damaged, not cut, so saved
    joined.parent.mkdir()
    joined.write_bytes(whole + whole)
    done = worker.tag(WorkUnit(shard=TarShard(str(joined), joined.name)))
    # the members before the damage are committed, with the shard's row saying it is damaged (kept
    # whatever --include says, as in a local run)
    assert done.failure is None and (done.rows, done.errors) == (3, 1)
    assert "00000.tar" in pq.read_table(io.BytesIO(done.data)).column("path").to_pylist()
    assert Job.from_json(job.to_json()) == job


def _decoded(data: bytes):
    from ramtag.inputs import decode_bytes

    return decode_bytes(data, name="x.jpg")


# -- the dataset folder --------------------------------------------------------------------------


def test_parts_are_committed_and_a_crash_leaves_no_duplicates(tmp_path: Path) -> None:
    dest = tmp_path / "tags"
    out = DatasetOutput(dest, SETTINGS)
    first = out.commit("00000.tar", _part(["00000.tar/a"]), 1, 1)
    out.commit(None, _part(["x.jpg", "y.jpg"]), 2, 2)
    assert (first.name, sorted(p.name for p in dest.iterdir())) == (
        "00000.parquet", ["00000.parquet", "_ramtag", "images-000001.parquet"])
    os.close(out._lock_fd)  # the process dies: its lock goes with it
    # What a crash can leave: a half-written temporary file, and a part renamed into place
    # whose commit line never made it (it would be redone: kept, its rows would be there twice).
    (dest / ".00001.parquet.ramtag.tmp").write_bytes(b"PAR1 half")
    (dest / "00001.parquet").write_bytes(_part(["00001.tar/a"]))
    with open(dest / "_ramtag" / "journal", "a") as journal:
        journal.write(json.dumps({"writing": "00001.parquet"}) + "\n" + '{"part": "000')
    with DatasetOutput(dest, SETTINGS) as again:
        assert set(again.done_shards) == {"00000.tar"} and again.done_keys() == {"x.jpg", "y.jpg"}
        assert sorted(p.name for p in dest.iterdir()) == ["00000.parquet", "_ramtag", "images-000001.parquet"]
        again.commit("00001.tar", _part(["00001.tar/a"]), 1, 1)
    assert pq.read_table(dest).num_rows == 4  # pyarrow reads the folder as one table, _ramtag ignored
    (dest / "00000.parquet").unlink()  # deleting a part redoes its shard
    with DatasetOutput(dest, SETTINGS) as again:
        assert set(again.done_shards) == {"00001.tar"}
        # the shard changed: its part is replaced under the same name, with the version it was read at
        again.commit("00001.tar", _part(["00001.tar/b", "00001.tar/c"]), 2, 0, version="10:20")
    assert sorted(p.name for p in dest.iterdir()) == ["00001.parquet", "_ramtag", "images-000001.parquet"]
    assert pq.read_table(dest / "00001.parquet").column("path").to_pylist() == ["00001.tar/b", "00001.tar/c"]
    # a crash after the rename, before its entry: the file is the new part; the journal still says
    # the old version, so the next run finds the shard changed and does it once more (never twice over)
    with open(dest / "_ramtag" / "journal", "a") as journal:
        journal.write(json.dumps({"writing": "00001.parquet"}) + "\n")
    with DatasetOutput(dest, SETTINGS) as again:
        assert again.done_shards["00001.tar"].version == "10:20" and (dest / "00001.parquet").exists()


def test_remote_shards_are_planned_again_when_their_version_changed(tmp_path: Path) -> None:
    """A committed shard behind a URL was taken as unchanged for ever; now its ETag (or
    modification time) and size say, as a local shard's size and time do."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pytest.importorskip("aiohttp")
    etags = {"/00000.tar": '"a"', "/00001.tar": '"b"', "/00002.tar": None}

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404 if etags.get(self.path) == "gone" else 200)
            self.send_header("Content-Length", "10240")
            if etags.get(self.path):
                self.send_header("ETag", etags[self.path])
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    shards = [TarShard(f"{base}/0000{n}.tar", f"0000{n}.tar", remote=True) for n in range(3)]
    try:
        first = plan_units(shards)
        assert [unit.version for unit in first.units] == ['10240:"a"', '10240:"b"', None]
        done = {unit.name: Part(f"{unit.name}.parquet", unit.name, 1, 0, unit.version) for unit in first.units}
        etags["/00001.tar"] = '"b2"'
        again = plan_units(shards, done_shards=done)
        etags["/00000.tar"] = "gone"  # deleted on the server: tagged again, so that its failure is said
        gone = plan_units(shards, done_shards=done)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert [unit.name for unit in again.units] == ["00001.tar"] and again.changed_shards == 1
    assert again.skipped_shards == 2  # no version to go by: taken as unchanged, as before
    assert [unit.name for unit in gone.units] == ["00000.tar", "00001.tar"] and gone.units[0].version == "gone"


def test_journals_of_earlier_versions_keep_their_shard_stamps(tmp_path: Path) -> None:
    dest = tmp_path / "out"
    with DatasetOutput(dest, SETTINGS) as out:
        out.commit("00000.tar", _part(["00000.tar/a"]), 1, 0)
    with open(dest / "_ramtag" / "journal", "a") as journal:  # as written before versions
        journal.write(json.dumps({"part": "00000.parquet", "shard": "00000.tar", "rows": 1, "errors": 0,
                                  "size": 10240, "mtime_us": 1700000000000000}) + "\n")
    with DatasetOutput(dest, SETTINGS) as again:
        assert again.done_shards["00000.tar"].version == "10240:1700000000000000"


def test_other_settings_foreign_folders_and_files_are_refused(tmp_path: Path) -> None:
    dest = tmp_path / "tags"
    with DatasetOutput(dest, SETTINGS) as out:
        out.commit("00000.tar", _part(["00000.tar/a"]), 1)
    other = {**SETTINGS, "thresholds": [0.3] * 4}
    with pytest.raises(OutputError, match=r"other settings: thresholds .*--overwrite"):
        DatasetOutput(dest, other)
    with DatasetOutput(dest, other, overwrite=True) as out:
        assert out.parts == {} and not (dest / "00000.parquet").exists()
    assert dest.is_dir() and not any(dest.iterdir())  # nothing committed: its control files go
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    afile = tmp_path / "tags.parquet"
    afile.write_bytes(b"someone's file")
    for where, words in ((foreign, "ramtag did not write"), (afile, "is a file")):
        for overwrite in (False, True):
            with pytest.raises(OutputError, match=words):
                DatasetOutput(where, SETTINGS, overwrite=overwrite)
    assert (foreign / "keep.txt").read_text() == "mine" and afile.read_bytes() == b"someone's file"
    empty = tmp_path / "empty"
    empty.mkdir()
    with DatasetOutput(empty, SETTINGS):
        with pytest.raises(OutputError, match="another ramtag run is writing"):
            DatasetOutput(empty, SETTINGS)
    assert empty.is_dir() and not any(empty.iterdir())  # the user's empty folder stays


def test_a_local_file_unit_keeps_the_file_keys(tmp_path: Path, tiny_tagger) -> None:
    (tmp_path / "a.jpg").write_bytes(_jpeg())
    (tmp_path / "b.jpg").write_bytes(b"")
    unit = WorkUnit.from_json(json.dumps({"shard": None, "images": [
        {"key": "a.jpg", "path": str(tmp_path / "a.jpg")}, {"key": "b.jpg", "path": str(tmp_path / "b.jpg")}]}))
    assert list(unit.refs()) == [ImageRef(tmp_path / "a.jpg", "a.jpg"), ImageRef(tmp_path / "b.jpg", "b.jpg")]
    result = UnitTagger(Job(), tagger=tiny_tagger).tag(unit)
    table = pq.read_table(io.BytesIO(result.data))
    assert table.column("path").to_pylist() == ["a.jpg", "b.jpg"] and (result.rows, result.errors) == (2, 1)
    assert "empty file" in table.column("error")[1].as_py()
