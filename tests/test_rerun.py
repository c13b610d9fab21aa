"""Re-runs onto an existing output, through the real command line: the output stays true to the
collection as it changes (files added, replaced, deleted, repaired; folders added)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from test_cli_run import REPO, ramtag  # tests/ is on sys.path (pytest rootdir import)


def _image(path: Path, size: tuple[int, int] = (24, 16), shade: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (shade, 90, 160)).save(path, "JPEG")
    return path


def _run(*args: str | Path, fixture, out: Path):
    result = ramtag(*args, "--out", out, "--workers", "0", *fixture.cli_args())
    assert result.exit_code in (0, 1, 2), result.output
    return result


def _summary(result) -> str:
    lines = [line for line in result.stderr.splitlines() if " found" in line]
    assert lines, result.stderr
    return lines[-1]


def test_a_second_folder_keeps_the_first_folders_keys(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "d1" / "beach.jpg")
    _image(tmp_path / "d1" / "sub" / "dog.jpg", shade=10)
    _image(tmp_path / "d2" / "beach.jpg", size=(30, 20))
    out = tmp_path / "multi.parquet"
    assert _run("d1", fixture=ramplus_tiny, out=out).exit_code == 0
    assert pd.read_parquet(out)["path"].tolist() == ["beach.jpg", "sub/dog.jpg"]
    result = _run("d1", "d2", fixture=ramplus_tiny, out=out)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert frame["path"].tolist() == ["beach.jpg", "sub/dog.jpg", "d2/beach.jpg"]  # one row per file
    assert frame.set_index("path").loc["d2/beach.jpg", "width"] == 30
    assert _summary(result).startswith("3 images found: 1 new, 2 unchanged; 0 errors")
    roots = json.loads(pq.read_schema(out).metadata[b"ramtag"])["roots"]
    assert roots == [{"path": str((tmp_path / "d1").resolve()), "prefix": ""},
                     {"path": str((tmp_path / "d2").resolve()), "prefix": "d2/"}]
    # from elsewhere, written another way, in the other order: the same keys, nothing tagged
    monkeypatch.chdir(tmp_path / "d1" / "sub")
    again = _run(str(tmp_path / "d2") + "/", "../../d1", fixture=ramplus_tiny, out=out)
    assert "nothing new to tag: 3 images found, all unchanged" in again.stderr
    assert pd.read_parquet(out)["path"].tolist() == frame["path"].tolist()
    # a folder inside a recorded one keeps the keys it has there; a new folder named alone is prefixed
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "d3" / "cat.jpg")
    assert "nothing new" in _run("d1/sub", fixture=ramplus_tiny, out=out).stderr
    _run("d3", fixture=ramplus_tiny, out=out)
    assert pd.read_parquet(out)["path"].tolist()[-1] == "d3/cat.jpg"


def test_a_recorded_folder_found_inside_a_walked_one_keeps_its_keys(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "photos" / "2024" / "a.jpg")
    _image(tmp_path / "photos" / "top.jpg")
    out = tmp_path / "tags.parquet"
    _run("photos/2024", fixture=ramplus_tiny, out=out)
    result = _run("photos", fixture=ramplus_tiny, out=out)
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(out)["path"].tolist() == ["a.jpg", "photos/top.jpg"]


def test_a_file_named_or_listed_inside_a_recorded_folder_has_that_folders_key(
    tmp_path: Path, ramplus_tiny, monkeypatch
) -> None:
    """`find . -name '*.jpg' | ramtag run --files-from -` onto an output a folder run made added
    ./small/a.jpg beside a.jpg: one photo, two rows, tagged again."""
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "small" / "a.jpg")
    _image(tmp_path / "small" / "sub" / "b.jpg", shade=10)
    _image(tmp_path / "elsewhere.jpg", shade=200)
    out = tmp_path / "tags.parquet"
    assert _run("small", fixture=ramplus_tiny, out=out).exit_code == 0
    listing = "./small/a.jpg\nsmall/sub/b.jpg\n"
    result = ramtag("--files-from", "-", "--out", out, "--workers", "0", *ramplus_tiny.cli_args(), input=listing)
    assert "nothing new to tag: 2 images found, all unchanged" in result.stderr, result.stderr
    assert "nothing new" in _run(tmp_path / "small" / "sub" / "b.jpg", fixture=ramplus_tiny, out=out).stderr
    _run("elsewhere.jpg", fixture=ramplus_tiny, out=out)  # outside every folder: its path as given
    assert pd.read_parquet(out)["path"].tolist() == ["a.jpg", "sub/b.jpg", "elsewhere.jpg"]
    # a glob written against the path as given still takes it (its key is shorter)
    _image(tmp_path / "small" / "sub" / "c.jpg", shade=30)
    listing = "small/a.jpg\nsmall/sub/c.jpg\n"
    result = ramtag("--files-from", "-", "--exclude", "small/sub/*", "--out", out, "--workers", "0",
                    *ramplus_tiny.cli_args(), input=listing)
    assert result.exit_code == 0 and "matched no file" not in result.stderr, result.stderr
    assert "sub/c.jpg" not in pd.read_parquet(out)["path"].tolist()
    # a folder the walk reaches through a link to elsewhere: keyed as the walk keys it
    _image(tmp_path / "outside" / "d.jpg", shade=60)
    (tmp_path / "small" / "ext").symlink_to(tmp_path / "outside", target_is_directory=True)
    _run("small", fixture=ramplus_tiny, out=out)
    assert "nothing new" in _run("small/ext/d.jpg", fixture=ramplus_tiny, out=out).stderr
    assert pd.read_parquet(out)["path"].tolist().count("ext/d.jpg") == 1


def test_keys_that_would_collide_are_refused_before_anything_is_tagged(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "d1" / "d2" / "x.jpg")  # keyed d2/x.jpg under d1
    _image(tmp_path / "d2" / "x.jpg")  # a new input d2 would key its x.jpg the same
    out = tmp_path / "tags.parquet"
    _run("d1", fixture=ramplus_tiny, out=out)
    before = out.read_bytes()
    result = _run("d1", "d2", fixture=ramplus_tiny, out=out)
    assert result.exit_code == 2
    message = result.stderr.strip().splitlines()[-1]
    assert "would be keyed d2/" in message and "another --out" in message and str(tmp_path / "d1" / "d2") in message
    assert out.read_bytes() == before and not (tmp_path / "tags.parquet.parts").exists()


def test_changed_deleted_and_repaired_files(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    _image(photos / "a.jpg")
    _image(photos / "b.jpg", shade=200)
    _image(photos / "gone.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not a whole jpeg")
    out = tmp_path / "tags.parquet"
    _run(photos, fixture=ramplus_tiny, out=out)
    first = pd.read_parquet(out).set_index("path")
    assert first.loc["broken.jpg", "error"] is not None and first.loc["a.jpg", "file_size"] == (photos / "a.jpg").stat().st_size

    # replaced by another picture under the same name (an edit, a re-export); one deleted; one repaired
    _image(photos / "a.jpg", size=(40, 30), shade=30)
    (photos / "gone.jpg").unlink()
    shutil.copyfile(photos / "b.jpg", photos / "broken.jpg")
    # --keep-errors leaves error rows of files that did not change; the repaired one did
    result = _run(photos, "--keep-errors", fixture=ramplus_tiny, out=out)
    assert _summary(result).startswith("3 images found: 2 changed (re-tagged), 1 unchanged; 0 errors")
    assert "1 row names a file no longer there (e.g. gone.jpg): kept; --prune removes it" in result.stderr

    result = _run(photos, "--prune", fixture=ramplus_tiny, out=out)
    assert "nothing new to tag: 3 images found, all unchanged" in result.stderr
    assert "1 row names a file no longer there: removed (--prune), e.g. gone.jpg" in result.stderr
    frame = pd.read_parquet(out)
    assert sorted(frame["path"]) == ["a.jpg", "b.jpg", "broken.jpg"] and frame["path"].is_unique
    rows = frame.set_index("path")
    assert (rows.loc["a.jpg", "width"], rows.loc["a.jpg", "height"]) == (40, 30)  # its new size
    assert rows.loc["a.jpg", "file_size"] == (photos / "a.jpg").stat().st_size
    assert pd.isna(rows.loc["broken.jpg", "error"]) and list(rows.loc["broken.jpg", "tags"]) == list(rows.loc["b.jpg", "tags"])
    modified = rows.loc["b.jpg", "file_modified"]
    assert modified == pd.Timestamp((photos / "b.jpg").stat().st_mtime_ns // 1000, unit="us", tz="UTC")

    # the same result as tagging the collection as it is now, from nothing
    fresh = tmp_path / "fresh.parquet"
    _run(photos, fixture=ramplus_tiny, out=fresh)
    pd.testing.assert_frame_equal(rows.sort_index(), pd.read_parquet(fresh).set_index("path").sort_index())
    assert "nothing new to tag: 3 images found, all unchanged" in _run(photos, fixture=ramplus_tiny, out=out).stderr


def test_a_failure_again_keeps_one_row_with_the_new_message(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    _image(photos / "a.jpg")
    (photos / "bad.jpg").write_bytes(b"not an image at all")
    out = tmp_path / "tags.parquet"
    _run(photos, fixture=ramplus_tiny, out=out)
    (photos / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut off")
    result = _run(photos, fixture=ramplus_tiny, out=out)
    assert _summary(result).startswith("2 images found: 1 retried after an error, 1 unchanged; 1 error")
    frame = pd.read_parquet(out)
    assert frame["path"].tolist() == ["a.jpg", "bad.jpg"]
    assert frame.set_index("path").loc["bad.jpg", "file_size"] == len(b"\xff\xd8\xff\xe0 cut off")
    kept = _run(photos, "--keep-errors", fixture=ramplus_tiny, out=out)  # not changed since: left as it is
    assert "nothing new to tag: 2 images found, all unchanged" in kept.stderr


def test_rows_of_folders_not_named_are_never_pruned(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "d1" / "a.jpg")
    _image(tmp_path / "d2" / "b.jpg")
    out = tmp_path / "tags.parquet"
    _run("d1", "d2", fixture=ramplus_tiny, out=out)
    (tmp_path / "d2" / "b.jpg").unlink()
    _image(tmp_path / "d1" / "skipped.jpg")
    _run("d1", "--exclude", "skipped.jpg", fixture=ramplus_tiny, out=out)
    result = _run("d1", "--prune", "--exclude", "skipped.jpg", fixture=ramplus_tiny, out=out)
    assert "no longer there" not in result.stderr and "removed" not in result.stderr
    assert pd.read_parquet(out)["path"].tolist() == ["d1/a.jpg", "d2/b.jpg"]  # d2 was not named
    result = _run("d2", "--prune", fixture=ramplus_tiny, out=out)
    assert "removed (--prune), e.g. d2/b.jpg" in result.stderr
    assert pd.read_parquet(out)["path"].tolist() == ["d1/a.jpg"]


def test_content_hash_tells_a_touched_file_from_a_changed_one(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    _image(photos / "a.jpg")
    _image(photos / "b.jpg", shade=200)
    out = tmp_path / "tags.parquet"
    _run(photos, "--content-hash", fixture=ramplus_tiny, out=out)
    hashes = pd.read_parquet(out).set_index("path")["file_sha256"]
    assert len(hashes["a.jpg"]) == 64 and hashes["a.jpg"] != hashes["b.jpg"]
    os.utime(photos / "a.jpg", ns=(1, 10**18))  # touched: the same bytes
    # b.jpg rewritten with the same size and time: only the content says it changed
    before = (photos / "b.jpg").stat()
    data = bytearray((photos / "b.jpg").read_bytes())
    data[-3] ^= 0xFF
    (photos / "b.jpg").write_bytes(bytes(data))
    os.utime(photos / "b.jpg", ns=(before.st_atime_ns, before.st_mtime_ns))
    hashed = _run(photos, "--content-hash", fixture=ramplus_tiny, out=out)
    assert _summary(hashed).startswith("2 images found: 1 changed (re-tagged), 1 unchanged")
    assert pd.read_parquet(out)["path"].tolist() == ["a.jpg", "b.jpg"]
    by_time = _run(photos, fixture=ramplus_tiny, out=out)  # without hashing, a's new time is a change
    assert _summary(by_time).startswith("2 images found: 1 changed (re-tagged), 1 unchanged")


def test_an_output_of_an_earlier_version_is_built_upon(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    _image(photos / "a.jpg")
    out = tmp_path / "tags.parquet"
    _run(photos, fixture=ramplus_tiny, out=out)
    table = pq.read_table(out)
    metadata = json.loads(table.schema.metadata[b"ramtag"])
    del metadata["roots"], metadata["key_scheme"]
    old = table.drop_columns(["file_size", "file_modified", "file_sha256"])
    old = old.replace_schema_metadata({**old.schema.metadata, b"ramtag": json.dumps(metadata).encode()})
    pq.write_table(old, out)  # as ramtag wrote it before rows had file_ columns
    _image(photos / "b.jpg")
    result = _run(photos, fixture=ramplus_tiny, out=out)
    assert _summary(result).startswith("2 images found: 1 new, 1 unchanged"), result.stderr
    frame = pd.read_parquet(out)
    assert frame["path"].tolist() == ["a.jpg", "b.jpg"]
    assert frame["file_size"].isna().tolist() == [True, False]  # nothing known of the old row's file


def test_kill_9_while_replacing_rows_then_rerun_equals_an_uninterrupted_run(
    tmp_path: Path, ramplus_tiny, monkeypatch
) -> None:
    names = [f"{i:02}.jpg" for i in range(10)]
    for copy in ("killed", "whole"):
        for number, name in enumerate(names):
            _image(tmp_path / copy / "photos" / name, shade=number * 20)
        (tmp_path / copy / "photos" / "03.jpg").write_bytes(b"broken")
    # --files-from -: the killed run waits for a list that never comes, so it cannot finish first
    args = ["--files-from", "-", "--save-every", "2", "--batch-size", "2", "--workers", "0", "--all-scores",
            *ramplus_tiny.cli_args()]
    for copy in ("killed", "whole"):  # keys with --files-from start with the folder as written: "photos/"
        monkeypatch.chdir(tmp_path / copy)
        assert ramtag("photos", "--out", "tags.parquet", *args, input="").exit_code == 0
    for copy in ("killed", "whole"):  # the same changes in both: 7 images to redo, one new
        photos = tmp_path / copy / "photos"
        for number, name in enumerate(names[2:8], start=2):
            _image(photos / name, size=(32, 24), shade=255 - number * 20)
            os.utime(photos / name, ns=(10**18, 10**18 + number))
        shutil.copyfile(photos / "00.jpg", photos / "03.jpg")
        os.utime(photos / "03.jpg", ns=(10**18, 10**18))
        _image(photos / "10.jpg")
        (photos / "09.jpg").unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "ramtag", "run", "photos", "--out", "tags.parquet", "--prune", *args],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=killed,
    )
    journal = killed / "tags.parquet.parts" / "journal"
    deadline = time.monotonic() + 120
    while not journal.exists() or journal.read_text().count("\n") < 2:
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "no part was saved in time"
        time.sleep(0.01)
    process.kill()
    process.wait()
    process.stdin.close()
    process.stderr.close()
    assert len(pd.read_parquet(killed / "tags.parquet")) == 10  # the previous version, whole
    monkeypatch.chdir(killed)
    resumed = ramtag("photos", "--out", "tags.parquet", "--prune", *args, input="")
    assert resumed.exit_code == 0, resumed.output
    monkeypatch.chdir(tmp_path / "whole")
    whole = ramtag("photos", "--out", "tags.parquet", "--prune", *args, input="")
    assert _summary(whole).startswith("10 images found: 1 new, 5 changed (re-tagged), 1 retried after an error, 3 unchanged")
    after, expected = pd.read_parquet(killed / "tags.parquet"), pd.read_parquet(tmp_path / "whole" / "tags.parquet")
    assert after["path"].is_unique and len(after) == 10 and "photos/09.jpg" not in set(after["path"])
    # the two copies' files have their own times; everything else is the same, row for row
    pd.testing.assert_frame_equal(after.drop(columns="file_modified"), expected.drop(columns="file_modified"))
    for row in after.itertuples():
        assert row.file_modified.value // 1000 == (killed / row.path).stat().st_mtime_ns // 1000
    assert not (killed / "tags.parquet.parts").exists()


def test_an_empty_output_file_still_refuses(tmp_path: Path) -> None:
    """``recorded_roots`` reads only what ramtag wrote: anything else yields no roots, no error."""
    from ramtag.outputs.file import recorded_roots

    (tmp_path / "x.parquet").write_bytes(b"")
    assert recorded_roots(tmp_path / "x.parquet") == []
    pq.write_table(pa.table({"path": ["a"]}), tmp_path / "y.parquet")
    assert recorded_roots(tmp_path / "y.parquet") == []


def test_a_changed_images_sidecar_is_refreshed_and_an_orphan_is_only_reported(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    _image(photos / "a.jpg")
    _image(photos / "b.jpg", shade=200)
    args = [photos, "--xmp", "--workers", "0", *ramplus_tiny.cli_args()]
    assert ramtag(*args).exit_code == 0
    sidecar = (photos / "a.jpg.xmp").read_text()
    size = (photos / "a.jpg").stat().st_size
    assert f"<ramtag:Image>{size} bytes, modified " in sidecar
    assert "skipped 2 images whose sidecar is up to date" in ramtag(*args).stderr
    _image(photos / "a.jpg", size=(40, 30), shade=10)  # re-exported under the same name
    (photos / "b.jpg").unlink()
    result = ramtag(*args)
    assert "1 image: 1 tagged" in result.stderr, result.stderr
    refreshed = (photos / "a.jpg.xmp").read_text()
    assert f"<ramtag:Image>{(photos / 'a.jpg').stat().st_size} bytes, modified " in refreshed and refreshed != sidecar
    assert (f"1 XMP sidecar with ramtag's tags has no image beside it any more (e.g. {photos / 'b.jpg.xmp'}): "
            "kept; 'ramtag xmp clean FILE' takes ramtag's tags out") in result.stderr
    assert (photos / "b.jpg.xmp").exists()


def test_embedding_with_out_records_the_photo_as_written(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    _image(photos / "a.jpg")
    out = tmp_path / "tags.parquet"
    before = (photos / "a.jpg").stat().st_size
    assert _run(photos, "--embed", fixture=ramplus_tiny, out=out).exit_code == 0
    row = pd.read_parquet(out).iloc[0]
    assert row["file_size"] == (photos / "a.jpg").stat().st_size != before  # the keywords are in it now
    assert "nothing new to tag: 1 image found, all unchanged" in _run(photos, "--embed", fixture=ramplus_tiny, out=out).stderr


def test_prune_only_touches_rows_found_in_a_folder_input(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    """Rows of files named directly share the keys of a folder keyed without a prefix: never pruned;
    nor the members of a shard left out by --exclude; nor the folder ``..`` written relative."""
    from test_shards import _jpeg, write_shard

    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "d1" / "a.jpg")
    _image(tmp_path / "loose.jpg")
    write_shard(tmp_path / "s.tar", [("m1.jpg", _jpeg()), ("m2.jpg", _jpeg())])
    out = tmp_path / "tags.parquet"
    _run("d1", fixture=ramplus_tiny, out=out)
    _run("d1", "loose.jpg", "s.tar", fixture=ramplus_tiny, out=out)
    frame = pd.read_parquet(out)
    assert frame["path"].tolist() == ["a.jpg", "loose.jpg", "s.tar/m1", "s.tar/m2"]
    assert frame["root"].tolist()[:2] == [0, None] or pd.isna(frame["root"].tolist()[1])
    result = _run("d1", "s.tar", "--exclude", "s.tar/m2", "--prune", fixture=ramplus_tiny, out=out)
    assert "no longer there" not in result.stderr and "removed" not in result.stderr, result.stderr
    assert pd.read_parquet(out)["path"].tolist() == ["a.jpg", "loose.jpg", "s.tar/m1", "s.tar/m2"]
    monkeypatch.chdir(tmp_path / "d1")  # ".." is not a folder inside d1: nothing collides
    _image(tmp_path / "d2" / "b.jpg")
    assert _run(".", "../d2", fixture=ramplus_tiny, out=out).exit_code == 0


def test_a_file_that_cannot_be_looked_at_is_not_taken_for_deleted(monkeypatch, tmp_path: Path) -> None:
    from ramtag.outputs import rerun

    assert rerun.gone(str(tmp_path / "missing.jpg")) and rerun.gone(str(tmp_path / "missing" / "x.jpg"))

    def denied(path):
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(rerun.os, "lstat", denied)
    assert not rerun.gone(str(tmp_path / "unreadable" / "x.jpg"))


def test_an_unfinished_runs_roots_come_before_the_outputs(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "d1" / "a.jpg")
    _image(tmp_path / "d2" / "x.jpg")
    _image(tmp_path / "d2" / "y.jpg")
    out = tmp_path / "tags.parquet"
    _run("d1", fixture=ramplus_tiny, out=out)
    from ramtag.outputs.file import ResumableOutput

    write = ResumableOutput.write

    def write_then_stop(self, batch):
        write(self, batch)
        self.save()
        raise KeyboardInterrupt  # the run dies after its first part

    with monkeypatch.context() as patch:
        patch.setattr(ResumableOutput, "write", write_then_stop)
        stopped = ramtag(tmp_path / "d2", "--out", out, "--batch-size", "1", "--workers", "0", *ramplus_tiny.cli_args())
        assert stopped.exit_code == 130
    assert (tmp_path / "tags.parquet.parts").is_dir()
    resumed = _run("d2", fixture=ramplus_tiny, out=out)  # written another way: the unfinished run's keys
    d2 = f"{tmp_path / 'd2'}/"
    assert sorted(pd.read_parquet(out)["path"]) == [d2 + "x.jpg", d2 + "y.jpg", "a.jpg"], resumed.stderr


def test_a_file_whose_key_is_taken_by_another_is_said_not_tagged(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image(tmp_path / "d1" / "x.jpg")
    _image(tmp_path / "x.jpg", size=(30, 20))  # named directly: keyed x.jpg, like d1's x.jpg
    out = tmp_path / "tags.parquet"
    _run("d1", fixture=ramplus_tiny, out=out)
    result = _run("d1", "x.jpg", fixture=ramplus_tiny, out=out)
    assert "warning: x.jpg: its key x.jpg is d1/x.jpg's already: not tagged" in result.stderr
    frame = pd.read_parquet(out)
    assert frame["path"].tolist() == ["x.jpg"] and frame["width"].tolist() == [24]


def test_content_hash_on_an_output_made_without_it_records_the_hashes(tmp_path: Path, ramplus_tiny) -> None:
    """A row without a SHA-256 cannot vouch for its file's content: the first --content-hash run
    tags it again and records the hash; after that an edit that keeps size and time is caught."""
    photos = tmp_path / "photos"
    _image(photos / "a.jpg")
    _image(photos / "b.jpg", shade=200)
    out = tmp_path / "tags.parquet"
    _run(photos, fixture=ramplus_tiny, out=out)
    first = _run(photos, "--content-hash", fixture=ramplus_tiny, out=out)
    assert _summary(first).startswith("2 images found: 2 re-tagged to record their SHA-256, 0 unchanged")
    assert pd.read_parquet(out)["file_sha256"].notna().all()
    before = (photos / "a.jpg").stat()
    data = bytearray((photos / "a.jpg").read_bytes())
    data[-3] ^= 0xFF
    (photos / "a.jpg").write_bytes(bytes(data))
    os.utime(photos / "a.jpg", ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _summary(_run(photos, "--content-hash", fixture=ramplus_tiny, out=out)).startswith(
        "2 images found: 1 changed (re-tagged), 1 unchanged")
