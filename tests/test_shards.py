"""Tar shards and URLs as inputs: brace patterns, webdataset keys, members read in memory, bad
members and archives as rows, fsspec URLs; the local engine on shards; Ray never imported."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import REPO
from ramtag.cli.app import app
from ramtag.errors import UsageError
from ramtag.inputs import ImageDecodeError, decode_bytes, decode_image, decode_ref, discover, discover_items
from ramtag.inputs.shards import ShardReadError, TarShard, member_key, members_or_error, shard_members
from ramtag.inputs.patterns import expand_braces


def _jpeg(size: tuple[int, int] = (24, 16), color: str = "teal") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG")
    return buffer.getvalue()


def _add(archive: tarfile.TarFile, name: str, data: bytes, kind: bytes = tarfile.REGTYPE, **fields: object) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for field, value in fields.items():
        setattr(info, field, value)
    archive.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A webdataset shard with these (name, bytes) members, in order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            _add(archive, name, data)
    return path


def sample_shards(folder: Path, count: int = 2, per_shard: int = 2) -> list[Path]:
    """img2dataset-like shards: key.jpg with key.json and key.txt beside it."""
    shards = []
    for shard in range(count):
        members = []
        for index in range(per_shard):
            key = f"{shard:05d}{index:04d}"
            members += [
                (f"{key}.jpg", _jpeg(color=("red", "blue", "green")[index % 3])),
                (f"{key}.json", json.dumps({"key": key}).encode()),
                (f"{key}.txt", b"a caption"),
            ]
        shards.append(write_shard(folder / f"{shard:05d}.tar", members))
    return shards


# -- patterns and keys ---------------------------------------------------------------------------


def test_brace_patterns_are_expanded_by_ramtag() -> None:
    assert expand_braces("s/{00000..00002}.tar") == ["s/00000.tar", "s/00001.tar", "s/00002.tar"]
    assert expand_braces("{8..11}")[-2:] == ["10", "11"]  # no padding without leading zeros
    assert expand_braces("{098..100}") == ["098", "099", "100"]
    assert expand_braces("{0..10..5}/{a,b}") == ["0/a", "0/b", "5/a", "5/b", "10/a", "10/b"]
    assert expand_braces("{3..1}") == ["3", "2", "1"]
    assert expand_braces("x{y}.tar") == ["x{y}.tar"]  # neither a range nor a list
    with pytest.raises(UsageError, match="split it"):
        expand_braces("{0..9999999}")


@pytest.mark.parametrize(
    ("name", "key"),
    [("000000123.jpg", "000000123"), ("00000/000000123.jpg", "00000/000000123"),
     ("x.depth.png", "x"), ("dir.v2/a.b.c.webp", "dir.v2/a"), ("._x.jpg", "._x")],
)
def test_webdataset_keys(name: str, key: str) -> None:
    assert member_key(name) == key


# -- reading shards ------------------------------------------------------------------------------


def test_image_members_in_order_keyed_by_shard_and_key(tmp_path: Path) -> None:
    path = tmp_path / "00007.tar"
    with tarfile.open(path, "w") as archive:
        _add(archive, "./a/000.jpg", _jpeg())
        _add(archive, "a/000.json", b"{}")
        _add(archive, "a/000.depth.png", b"png bytes")  # a second image of the same sample
        _add(archive, "link.jpg", b"", tarfile.SYMTYPE, linkname="/etc/passwd")
        _add(archive, "hard.jpg", b"", tarfile.LNKTYPE, linkname="a/000.jpg")
        _add(archive, "dir.jpg", b"", tarfile.DIRTYPE)
        _add(archive, "._001.jpg", b"macOS junk")
        _add(archive, "/abs/002.JPEG", _jpeg())
    refs = list(shard_members(TarShard(str(path), "00007.tar")))
    assert [ref.key for ref in refs] == ["00007.tar/a/000", "00007.tar/a/000.depth.png", "00007.tar/abs/002"]
    assert decode_ref(refs[0]).size == (24, 16)
    assert [ref.key for ref in shard_members(TarShard(str(path), "00007.tar"), hidden=True)][-2] == "00007.tar/._001"
    assert not any(tmp_path.glob("**/etc")) and sorted(p.name for p in tmp_path.iterdir()) == ["00007.tar"]


def test_a_samples_keys_do_not_depend_on_the_order_of_its_members(tmp_path: Path) -> None:
    """As a sorted tar has them: ``x.depth.png`` before ``x.jpg``; the plain ``x.jpg`` is still ``x``,
    so a join with img2dataset's metadata finds the right image."""
    image, depth = _jpeg((24, 16)), _jpeg((8, 8))
    keys = {}
    for order in ("depth first", "image first"):
        members = [("s/x.depth.png", depth), ("s/x.jpg", image), ("s/y.seg.png", depth), ("s/y.mask.png", image)]
        if order == "image first":
            members = [members[1], members[0], *members[2:]]
        path = write_shard(tmp_path / order / "00001.tar", members)
        refs = list(shard_members(TarShard(str(path), "00001.tar")))
        keys[order] = {ref.key: decode_ref(ref).size for ref in refs}
    # Frames of one clip are one sample, streamed: only the first waits, for a plain image or the end.
    frames = write_shard(tmp_path / "frames.tar", [(f"clip.{n:04d}.jpg", image) for n in range(5)])
    assert [ref.key for ref in shard_members(TarShard(str(frames), "frames.tar"))] == [
        "frames.tar/clip.0001.jpg", "frames.tar/clip.0002.jpg", "frames.tar/clip.0003.jpg", "frames.tar/clip.0004.jpg",
        "frames.tar/clip"]
    assert keys["depth first"] == keys["image first"] == {
        "00001.tar/s/x": (24, 16), "00001.tar/s/x.depth.png": (8, 8),
        "00001.tar/s/y": (8, 8), "00001.tar/s/y.mask.png": (24, 16)}  # no plain extension: the first is y


def test_bad_members_and_archives_are_rows(tmp_path: Path) -> None:
    good = _jpeg((40, 30))
    big = write_shard(tmp_path / "big.tar", [("a.jpg", good), ("b.png", b"x" * 70_000), ("c.jpg", good[:60])])
    refs = list(shard_members(TarShard(str(big), "big.tar"), max_pixels=1000))  # files over 68 kB unread
    errors = {}
    for ref in refs:
        try:
            decode_ref(ref, max_pixels=1200)
            errors[ref.key] = None
        except ImageDecodeError as error:
            errors[ref.key] = str(error)
    assert errors["big.tar/a"] is None
    assert "tar member too large: 70,000 bytes" in errors["big.tar/b"]
    assert "truncated" in errors["big.tar/c"] or "corrupt" in errors["big.tar/c"]
    whole = (tmp_path / "whole.tar")
    write_shard(whole, [("a.jpg", good), ("b.jpg", good)])
    cut = tmp_path / "cut.tar"
    padded = -(-len(good) // 512) * 512
    cut.write_bytes(whole.read_bytes()[: 512 + padded + 512 + 100])  # ends inside b.jpg
    keys = [(ref.key, ref.source.__class__.__name__) for ref in shard_members(TarShard(str(cut), "cut.tar"))]
    assert keys == [("cut.tar/a", "InMemory"), ("cut.tar/b", "Unusable")]
    with pytest.raises(ImageDecodeError, match="ends inside this member"):
        decode_ref(list(shard_members(TarShard(str(cut), "cut.tar")))[-1])
    # Cut between the two members (as a download can be): reads as a whole tar would, but says so.
    import gzip

    between = whole.read_bytes()[: 512 + padded]
    for name, data in (("between.tar", between), ("between.tar.gz", gzip.compress(between))):
        (tmp_path / name).write_bytes(data)
        refs = list(shard_members(TarShard(str(tmp_path / name), name)))
        assert [ref.key for ref in refs] == [f"{name}/a", name]
        with pytest.raises(ImageDecodeError, match="ends after 1 image member without the blocks that end an archive"):
            decode_ref(refs[-1])
    assert [ref.key for ref in shard_members(TarShard(str(whole), "whole.tar"))] == ["whole.tar/a", "whole.tar/b"]
    # A damaged header after the first member: tarfile stops there without a word; ramtag says so.
    three = bytearray(write_shard(tmp_path / "three.tar", [("a.jpg", good), ("b.jpg", good), ("c.jpg", good)])
                      .read_bytes())
    three[512 + padded + 148] ^= 1  # the second header's checksum
    (tmp_path / "three.tar").write_bytes(three)
    refs = list(shard_members(TarShard(str(tmp_path / "three.tar"), "three.tar")))
    assert [ref.key for ref in refs] == ["three.tar/a", "three.tar"]
    with pytest.raises(ImageDecodeError, match="damaged tar archive: reading stopped after 1 image member with more"):
        decode_ref(refs[-1])
    text = tmp_path / "notes.tar"
    text.write_text("not a tar archive at all\n" * 40)
    [row] = shard_members(TarShard(str(text), "notes.tar"))
    assert row.key == "notes.tar"
    with pytest.raises(ImageDecodeError, match="not a readable tar archive"):
        decode_ref(row)
    missing = TarShard(str(tmp_path / "gone.tar"), "gone.tar")
    with pytest.raises(ShardReadError, match="gone.tar: cannot read this tar shard"):
        list(shard_members(missing))
    [row] = members_or_error(missing)  # the local engine: a row, the run goes on
    assert row.key == "gone.tar"


def test_bytes_decode_like_files(tmp_path: Path) -> None:
    for data in (b"", b"not an image", _jpeg()[:100]):
        path = tmp_path / "x.jpg"
        path.write_bytes(data)
        with pytest.raises(ImageDecodeError) as from_file:
            decode_image(path)
        with pytest.raises(ImageDecodeError) as from_bytes:
            decode_bytes(data, name="x.jpg")
        assert str(from_bytes.value) == str(from_file.value)
    assert decode_bytes(_jpeg((7, 5)), name="a.jpg").size == (7, 5)


# -- discovery -----------------------------------------------------------------------------------


def test_shards_from_patterns_folders_and_urls(tmp_path: Path) -> None:
    shards = sample_shards(tmp_path / "shards", count=3)
    expected = ["00000.tar/000000000", "00000.tar/000000001", "00001.tar/000010000",
                "00001.tar/000010001", "00002.tar/000020000", "00002.tar/000020001"]
    for spelling in (str(tmp_path / "shards/{00000..00002}.tar"), tmp_path / "shards",
                     (tmp_path / "shards").as_uri(), (tmp_path / "shards").as_uri() + "/{00000..00002}.tar"):
        assert [ref.key for ref in discover([spelling])] == expected, spelling
    assert [ref.key for ref in discover([shards[1]], include=["*0001"])] == ["00001.tar/000010001"]
    items = list(discover_items([tmp_path / "shards"]))
    assert [item.name for item in items] == ["00000.tar", "00001.tar", "00002.tar"]  # not opened
    Image.new("RGB", (8, 8)).save(tmp_path / "shards" / "photo.jpg")  # images beside: a photo folder
    assert [ref.key for ref in discover([tmp_path / "shards"])] == ["photo.jpg"]
    gap = list(discover([str(tmp_path / "shards/{00000..00003}.tar")]))  # a gap: the missing shard's error row
    assert [ref.key for ref in gap] == [*expected, "00003.tar"] and gap[-1].source.kind == "unreadable"
    with pytest.raises(UsageError, match=r"input not found: .*b.jpg \(from .*2 names, 1 not there\)"):  # a typo
        discover([str(tmp_path / "shards/{photo,b}.jpg")])
    assert [ref.key for ref in discover([shards[0], shards[0]])] == expected[:2]  # given twice: read once
    sample_shards(tmp_path / "elsewhere", count=1)
    with pytest.raises(UsageError, match="two tar shards are named 00000.tar"):
        list(discover([shards[0], tmp_path / "elsewhere"]))


def test_shards_of_one_name_are_refused_before_any_is_read(tmp_path: Path) -> None:
    first = sample_shards(tmp_path / "shards", count=3)
    other = sample_shards(tmp_path / "shards2", count=1)[0]
    pattern = str(tmp_path / "shards/0000{0,1,2}.tar")
    # Refused at the call, before the first item is asked for: no shard is opened, no image tagged.
    for inputs in ([first[0], other], [pattern, other], [tmp_path / "shards", tmp_path / "shards2"],
                   [(tmp_path / "shards").as_uri() + "/{00000..00001}.tar", other.as_uri()]):
        with pytest.raises(UsageError, match="two tar shards are named 00000.tar") as caught:
            discover_items(inputs)
        assert str(caught.value).count("\n") == 0 and "00000.tar and " in str(caught.value)
    # One shard spelled twice is the same file: tagged once, not a clash.
    warnings: list[tuple[Path, str]] = []
    items = list(discover_items([first[0], str(tmp_path / "shards" / "." / "00000.tar"), tmp_path / "shards"],
                                on_error=lambda path, why: warnings.append((path, why))))
    assert [item.name for item in items] == ["00000.tar", "00001.tar", "00002.tar"]
    assert [why for _, why in warnings] == ["given twice among the inputs: tagged once"] * 2


def test_a_run_refuses_shards_of_one_name_before_the_model_loads(
    tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = sample_shards(tmp_path / "shards", count=3)
    other = sample_shards(tmp_path / "shards2", count=1)[0]

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("ramtag.engine.local.tagger_for", no_model)
    out = tmp_path / "tags.parquet"
    for inputs in ([str(first[0]), str(other)], [str(tmp_path / "shards/0000{0,1,2}.tar"), str(other)]):
        result = CliRunner().invoke(app, ["run", *inputs, "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error: two tar shards are named 00000.tar") and result.stdout == ""
        assert not out.exists() and not Path(f"{out}.parts").exists()


def test_fsspec_urls_folders_and_files(tmp_path: Path) -> None:
    memory = fsspec.filesystem("memory")
    memory.pipe("/photos/b/2.jpg", _jpeg((5, 4)))
    memory.pipe("/photos/a.png", b"broken")
    memory.pipe("/photos/.hidden.jpg", _jpeg())
    memory.pipe("/photos/notes.txt", b"text")
    try:
        refs = list(discover(["memory://photos"]))
        assert [ref.key for ref in refs] == ["a.png", "b/2.jpg"]
        assert decode_ref(refs[1]).size == (5, 4)
        with pytest.raises(ImageDecodeError, match="not an image"):
            decode_ref(refs[0])
        [one] = discover(["memory://photos/b/2.jpg"])
        assert one.key == "memory://photos/b/2.jpg"  # a file named directly keeps its spelling
        memory.pipe("/more/b/2.jpg", _jpeg((5, 4)))
        keys = [ref.key for ref in discover(["memory://photos/", "memory://more"])]
        assert keys == ["memory://photos/a.png", "memory://photos/b/2.jpg", "memory://more/b/2.jpg"]
        memory.pipe("/big.jpg", b"x" * 70_000)
        [big] = discover(["memory://big.jpg"])
        with pytest.raises(ImageDecodeError, match="file too large"):
            decode_ref(big, max_pixels=1000)
    finally:
        memory.rm("/", recursive=True)
    with pytest.raises(UsageError, match="input not found: memory://nothing"):
        discover(["memory://nothing"])
    with pytest.raises(UsageError, match="cannot use this URL"):
        discover(["nosuchscheme://bucket/x.tar"])


def test_cloud_urls_name_the_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec.core

    def missing(url: str, **_: object) -> None:
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec.core, "url_to_fs", missing)
    result = CliRunner().invoke(app, ["run", "s3://bucket/shards/{00000..00127}.tar"])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: s3://bucket/shards/00000.tar: reading s3:// URLs needs s3fs: pip install s3fs"
    )


# -- the local engine on shards ------------------------------------------------------------------


def test_local_engine_tags_shards_and_resumes_by_key(tmp_path: Path, ramplus_tiny) -> None:
    sample_shards(tmp_path / "shards", count=2)
    write_shard(tmp_path / "shards" / "00002.tar", [("bad.jpg", b"broken"), ("ok.jpg", _jpeg())])
    out = tmp_path / "tags.parquet"
    args = ["run", str(tmp_path / "shards"), "--out", str(out), "--workers", "1", *ramplus_tiny.cli_args()]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert frame["path"].tolist() == ["00000.tar/000000000", "00000.tar/000000001", "00001.tar/000010000",
                                      "00001.tar/000010001", "00002.tar/bad", "00002.tar/ok"]
    assert "not an image" in frame.set_index("path").loc["00002.tar/bad", "error"]
    assert frame["error"].notna().sum() == 1 and (frame["width"].dropna() == 24).all()
    sample_shards(tmp_path / "shards", count=4)  # two more shards (and the first two rewritten)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "holds 6 rows" in result.stderr, result.stderr
    # 00002.tar and 00003.tar are new samples; the others hold the same members (tar header size and
    # time), and 00002.tar's old members are gone from it
    assert "8 images found: 4 new, 4 unchanged; 0 errors" in result.stderr
    assert "2 rows name files no longer there (e.g. 00002.tar/bad): kept; --prune removes them" in result.stderr
    result = CliRunner().invoke(app, [*args, "--prune"])
    assert "removed (--prune)" in result.stderr and "nothing new to tag: 8 images found" in result.stderr
    assert sorted(pd.read_parquet(out)["path"]) == sorted(
        f"0000{shard}.tar/0000{shard}000{member}" for shard in range(4) for member in range(2))
    assert pd.read_parquet(out)["path"].is_unique
    result = CliRunner().invoke(app, [*args, "--xmp"])
    assert result.exit_code == 2 and "--xmp writes sidecars beside image files" in result.stderr


def test_a_shard_read_whole_again_replaces_its_error_row(tmp_path: Path, ramplus_tiny) -> None:
    """Its members' rows say how it went now: the old error row stayed beside them, counted as a
    file no longer there, until --prune."""
    sample_shards(tmp_path / "shards", count=2)
    good = (tmp_path / "shards" / "00001.tar").read_bytes()
    (tmp_path / "shards" / "00001.tar").write_bytes(b"<html>503 Service Unavailable</html>")  # a proxy's page
    out = tmp_path / "tags.parquet"
    args = ["run", str(tmp_path / "shards"), "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert "not a readable tar archive" in pd.read_parquet(out).set_index("path").loc["00001.tar", "error"]
    (tmp_path / "shards" / "00001.tar").write_bytes(good)  # downloaded again, whole
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "no longer there" not in result.stderr, result.stderr
    frame = pd.read_parquet(out)
    assert frame["error"].isna().all() and sorted(frame["path"]) == [
        "00000.tar/000000000", "00000.tar/000000001", "00001.tar/000010000", "00001.tar/000010001"]


def test_local_runs_never_import_ray(tmp_path: Path, ramplus_tiny) -> None:
    sample_shards(tmp_path, count=1, per_shard=1)
    code = (
        "import sys\n"
        "import ramtag.cli.app\n"
        "assert 'ray' not in sys.modules, 'import'\n"
        "from typer.testing import CliRunner\n"
        f"result = CliRunner().invoke(ramtag.cli.app.app, {['run', str(tmp_path), '-q', '--workers', '0', *ramplus_tiny.cli_args()]!r})\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'ray' not in sys.modules, 'run'\n"
        "print(result.stdout.count('00000.tar/'))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def test_ray_engine_needs_an_output_folder(tmp_path: Path, ramplus_tiny) -> None:
    sample_shards(tmp_path / "shards", count=1)
    cases = [
        ([], "add --out FOLDER"),
        (["--out", str(tmp_path / "x"), "--format", "csv"], "Parquet only"),
        (["--out", str(tmp_path / "x"), "--xmp"], "--xmp is not available with --engine ray"),
        (["--out", str(tmp_path / "x"), "--prune"], "--prune is not available with --engine ray"),
        (["--out", str(tmp_path / "x"), "--content-hash"], "--content-hash is not available with --engine ray"),
    ]
    for extra, message in cases:
        result = CliRunner().invoke(app, ["run", str(tmp_path / "shards"), "--engine", "ray", *extra, *ramplus_tiny.cli_args()])
        assert result.exit_code == 2 and message in result.stderr, result.output
    result = CliRunner().invoke(app, ["run", str(tmp_path / "shards"), "--concurrency", "2"])
    assert result.exit_code == 2 and "--concurrency go with --engine ray" in result.stderr
    result = CliRunner().invoke(app, ["run", str(tmp_path / "shards"), "--out", str(tmp_path), *ramplus_tiny.cli_args()])
    assert result.exit_code == 2 and f"is a folder: --out names the file to write, such as {tmp_path / 'tags.parquet'}" \
        in " ".join(result.stderr.split())


def test_member_names_that_are_not_utf8_keep_their_own_keys(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buffer, "JPEG")
    path = tmp_path / "00000.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as archive:
        for name in ["caf\\xe9.jpg", os.fsdecode(b"caf\xe9.jpg")]:  # a literal backslash, and a Latin-1 byte
            info = tarfile.TarInfo(name)
            info.size = len(buffer.getvalue())
            archive.addfile(info, io.BytesIO(buffer.getvalue()))
    keys = [ref.key for ref in shard_members(TarShard(str(path), path.name))]
    assert keys == ["00000.tar/caf\\xe9", "00000.tar/caf\\xe9.jpg"]  # written the same, so told apart


def test_shards_in_a_folder_of_images_are_named_as_not_read(tmp_path: Path, ramplus_tiny) -> None:
    # A folder with images is walked for images (README); its tar files are left out, and said so.
    folder = tmp_path / "photos"
    sample_shards(folder, count=2)
    (folder / "a.jpg").write_bytes(_jpeg())
    out = tmp_path / "tags.csv"
    result = CliRunner().invoke(app, ["run", str(folder), "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(out)["path"].tolist() == ["a.jpg"]
    assert f"2 tar shards in folders walked for images were not read (e.g. {folder / '00000.tar'})" in result.stderr
    # One of them named as an input as well: read there, and only the other is said to be unread.
    result = CliRunner().invoke(app, ["run", str(folder), str(folder / "00001.tar"), "--out", str(tmp_path / "both.csv"),
                                      "--workers", "0", *ramplus_tiny.cli_args()])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "both.csv")) == 3
    assert f"1 tar shard in folders walked for images was not read (e.g. {folder / '00000.tar'})" in result.stderr
    folder.joinpath("a.jpg").unlink()  # shards alone: a folder of shards, read, and nothing to say
    result = CliRunner().invoke(app, ["run", str(folder), "--out", str(tmp_path / "shards.csv"), "--workers", "0",
                                      *ramplus_tiny.cli_args()])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "shards.csv")) == 4 and "not read" not in result.stderr


def test_a_rerun_does_not_read_shards_unchanged_since_they_were_read_whole(
    tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A re-run used to read every shard again (over HTTP: download it) only to find its rows."""
    shards = sample_shards(tmp_path / "shards", count=3)
    write_shard(shards[2], [("000020000.jpg", _jpeg()), ("000020001.jpg", b"broken")])
    out = tmp_path / "tags.parquet"
    args = ["run", str(tmp_path / "shards"), "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    opened: list[str] = []
    real_open = TarShard.open
    monkeypatch.setattr(TarShard, "open", lambda shard: opened.append(shard.name) or real_open(shard))
    assert CliRunner().invoke(app, args).exit_code == 0
    assert sorted(opened) == ["00000.tar", "00001.tar", "00002.tar"]
    recorded = json.loads(pq.read_schema(out).metadata[b"ramtag"])["shards"]
    assert sorted(recorded) == ["00000.tar", "00001.tar", "00002.tar"]
    before = pd.read_parquet(out)

    opened.clear()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert opened == ["00002.tar"], "only the shard with an error row to retry is read"
    assert "6 images found: 1 retried after an error, 5 unchanged; 1 error" in result.stderr, result.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out).set_index("path").loc[before["path"]].reset_index(),
                                  before, check_like=True)

    opened.clear()
    result = CliRunner().invoke(app, [*args, "--keep-errors"])
    assert opened == [] and "nothing new to tag: 6 images found" in result.stderr, result.stderr

    # Rewritten (one member fewer): read again, and its member gone is found gone.
    os.utime(shards[0], ns=(0, 0))
    write_shard(shards[1], [("000010000.jpg", _jpeg(color="red"))])
    opened.clear()
    result = CliRunner().invoke(app, [*args, "--keep-errors", "--prune"])
    assert result.exit_code == 0, result.output
    assert sorted(opened) == ["00000.tar", "00001.tar"]
    assert "removed (--prune)" in result.stderr
    assert "00001.tar/000010001" not in set(pd.read_parquet(out)["path"])
    opened.clear()
    CliRunner().invoke(app, [*args, "--keep-errors"])
    assert opened == []


def test_shards_read_in_part_are_read_again(tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with --include saw only some members: the next one cannot vouch for the others."""
    sample_shards(tmp_path / "shards", count=1, per_shard=3)
    out = tmp_path / "tags.parquet"
    args = ["run", str(tmp_path / "shards"), "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    assert CliRunner().invoke(app, [*args, "--include", "*0000"]).exit_code == 0
    opened: list[str] = []
    real_open = TarShard.open
    monkeypatch.setattr(TarShard, "open", lambda shard: opened.append(shard.name) or real_open(shard))
    result = CliRunner().invoke(app, args)
    assert opened == ["00000.tar"] and "3 images found: 2 new, 1 unchanged" in result.stderr, result.stderr
    opened.clear()
    result = CliRunner().invoke(app, [*args, "--include", "*.jpg", "--exclude", "*0001.jpg"])  # member names
    assert opened == ["00000.tar"] and "nothing new to tag: 2 images found" in result.stderr, result.stderr
    opened.clear()
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert opened == ["00000.tar"], "--overwrite starts from nothing"


def test_rows_of_a_shard_deleted_from_a_shard_folder_are_gone(tmp_path: Path, ramplus_tiny) -> None:
    shards = sample_shards(tmp_path / "shards", count=3)
    other = sample_shards(tmp_path / "elsewhere", count=1)[0].rename(tmp_path / "elsewhere" / "00009.tar")
    out = tmp_path / "tags.parquet"
    args = ["run", str(tmp_path / "shards"), "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert CliRunner().invoke(app, [*args[:2], str(other), *args[2:]]).exit_code == 0
    shards[1].unlink()
    other.unlink()  # named as a file, not in the folder: its rows are never looked for
    result = CliRunner().invoke(app, args)
    assert "2 rows name files no longer there (e.g. 00001.tar/000010000): kept" in result.stderr, result.stderr
    assert len(pd.read_parquet(out)) == 8
    result = CliRunner().invoke(app, [*args, "--prune"])
    assert result.exit_code == 0 and "removed (--prune)" in result.stderr, result.stderr
    assert sorted(pd.read_parquet(out)["path"]) == [
        "00000.tar/000000000", "00000.tar/000000001", "00002.tar/000020000", "00002.tar/000020001",
        "00009.tar/000000000", "00009.tar/000000001"]
    result = CliRunner().invoke(app, args)
    assert "no longer there" not in result.stderr and "nothing new to tag: 4 images found" in result.stderr
    assert "00001.tar" not in json.loads(pq.read_schema(out).metadata[b"ramtag"])["shards"]


def test_a_shard_is_read_again_unless_the_output_holds_exactly_its_members(
    tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not skipped: a shard with a member gone whose row was kept (it must stay reported, and be
    prunable); one read without --hidden when --hidden asks for its hidden members; another
    folder's shard of the same name, size and time (review of the first version)."""
    shard = write_shard(tmp_path / "A" / "00000.tar", [("a.jpg", _jpeg()), ("b.jpg", _jpeg()), (".c.jpg", _jpeg())])
    out = tmp_path / "tags.parquet"
    common = ["--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    args = ["run", str(tmp_path / "A"), *common]
    assert CliRunner().invoke(app, args).exit_code == 0
    write_shard(shard, [("a.jpg", _jpeg()), (".c.jpg", _jpeg())])  # b.jpg taken out
    assert "1 row names a file no longer there" in CliRunner().invoke(app, args).stderr
    result = CliRunner().invoke(app, args)
    assert "1 row names a file no longer there" in result.stderr, "reported each run until pruned"
    assert "removed (--prune)" in CliRunner().invoke(app, [*args, "--prune"]).stderr
    assert sorted(pd.read_parquet(out)["path"]) == ["00000.tar/a"]

    opened: list[str] = []
    real_open = TarShard.open
    monkeypatch.setattr(TarShard, "open", lambda shard: opened.append(shard.name) or real_open(shard))
    assert "nothing new to tag: 1 image found" in CliRunner().invoke(app, args).stderr and opened == []
    result = CliRunner().invoke(app, [*args, "--hidden"])
    assert opened == ["00000.tar"] and "2 images found: 1 new, 1 unchanged" in result.stderr, result.stderr
    result = CliRunner().invoke(app, args)  # a hidden member left out is not gone
    assert opened == ["00000.tar"] * 2 and "no longer there" not in result.stderr, result.stderr
    assert sorted(pd.read_parquet(out)["path"]) == ["00000.tar/.c", "00000.tar/a"]
    result = CliRunner().invoke(app, args)
    assert opened == ["00000.tar"] * 2 and "nothing new to tag: 1 image found" in result.stderr, result.stderr

    other = write_shard(tmp_path / "B" / "00000.tar", [("x.jpg", _jpeg()), ("y.jpg", _jpeg()), (".z.jpg", _jpeg())])
    os.utime(shard, ns=(1_700_000_000_000_000_000,) * 2)
    os.utime(other, ns=(1_700_000_000_000_000_000,) * 2)
    assert shard.stat().st_size == other.stat().st_size
    assert CliRunner().invoke(app, [*args, "--hidden"]).exit_code == 0
    opened.clear()
    CliRunner().invoke(app, ["run", str(tmp_path / "B"), "--hidden", *common])
    assert opened == ["00000.tar"] and {"00000.tar/x", "00000.tar/y"} <= set(pd.read_parquet(out)["path"])


def test_a_shard_damaged_since_its_rows_says_so(tmp_path: Path, ramplus_tiny) -> None:
    """A re-download cut inside a member kept that member's old row and said nothing (it is CHANGED:
    its error row says what happened, as for a photo damaged since); a shard-level error row of an
    earlier read stayed, with its old message, when the shard read differently the next time."""
    shard = write_shard(tmp_path / "shards" / "00000.tar", [(f"{n}.jpg", _jpeg(size=(64, 48))) for n in range(4)])
    whole = shard.read_bytes()
    out = tmp_path / "tags.parquet"
    args = ["run", str(tmp_path / "shards"), "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    assert CliRunner().invoke(app, args).exit_code == 0
    shard.write_bytes(whole[:2048 + 300])  # cut inside the second member's data (its header at 1536)
    result = CliRunner().invoke(app, args)
    rows = pd.read_parquet(out).set_index("path")
    assert "the tar shard ends inside this member" in rows.loc["00000.tar/1", "error"], result.stderr
    assert "1 changed (re-tagged)" in result.stderr and "1 error" in result.stderr
    assert pd.isna(rows.loc["00000.tar/0", "error"]) and pd.isna(rows.loc["00000.tar/3", "error"])  # kept

    shard.write_bytes(whole[:6144])  # cut after the last member, without the blocks that end a tar
    CliRunner().invoke(app, args)
    rows = pd.read_parquet(out).set_index("path")
    assert "cut short between two members" in rows.loc["00000.tar", "error"]
    shard.write_bytes(whole[:2048 + 300])  # read again, now cut inside a member: the old message goes
    CliRunner().invoke(app, args)
    assert "00000.tar" not in set(pd.read_parquet(out)["path"])
    shard.write_bytes(whole)
    CliRunner().invoke(app, args)
    assert pd.read_parquet(out)["error"].isna().all() and len(pd.read_parquet(out)) == 4


def test_rows_of_a_shard_read_only_in_part_then_deleted_are_gone(tmp_path: Path, ramplus_tiny) -> None:
    """A shard cut off by a failed download, or read when the run was stopped, then deleted: its
    rows stayed for ever, and --prune said 'nothing new'."""
    import threading

    from ramtag.engine.job import InputOptions, Job, ModelOptions, OutputOptions
    from ramtag.engine.local import RunEvents, run_job

    folder = tmp_path / "shards"
    sample_shards(folder, count=2)
    cut = write_shard(folder / "00002.tar", [(f"{n:09d}.jpg", _jpeg(size=(64, 48))) for n in range(3)])
    cut.write_bytes(cut.read_bytes()[:2048 + 300])  # its second member cut off
    out = tmp_path / "tags.parquet"
    args = ["run", str(folder), "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert {"00002.tar/000000000", "00002.tar/000000001"} <= set(pd.read_parquet(out)["path"])
    cut.unlink()
    result = CliRunner().invoke(app, [*args, "--prune"])
    assert result.exit_code == 0 and "removed (--prune)" in result.stderr, result.stderr
    assert not any(path.startswith("00002.tar") for path in pd.read_parquet(out)["path"]), result.stderr

    # Stopped inside a shard (as by Ctrl-C), the shard deleted, the run continued.
    other = tmp_path / "other.parquet"
    write_shard(folder / "00003.tar", [(f"{n:09d}.jpg", _jpeg()) for n in range(6)])
    model = ModelOptions(checkpoint=str(ramplus_tiny.checkpoint), tag_list=str(ramplus_tiny.tags),
                         thresholds=str(ramplus_tiny.thresholds), device="cpu")
    job = Job(inputs=InputOptions(paths=(str(folder),)), model=model,
              outputs=OutputOptions(out=str(other), save_every=2), batch_size=2, workers=0)
    stop = threading.Event()

    class StopInTheLastShard(RunEvents):
        def batch(self, records):
            if any(record.key.startswith("00003.tar/") for record in records):
                stop.set()

    assert run_job(job, events=StopInTheLastShard(), stop=stop).result.stopped
    (folder / "00003.tar").unlink()
    result = CliRunner().invoke(app, ["run", str(folder), "--out", str(other), "--workers", "0", "--prune",
                                      *ramplus_tiny.cli_args()])
    assert result.exit_code == 0 and "removed (--prune)" in result.stderr, result.stderr
    assert sorted(pd.read_parquet(other)["path"]) == [
        "00000.tar/000000000", "00000.tar/000000001", "00001.tar/000010000", "00001.tar/000010001"]


def test_a_pattern_with_gaps_tags_what_is_there(tmp_path: Path, ramplus_tiny) -> None:
    """img2dataset leaves gaps where shards failed: one missing shard stopped the run (over HTTP it was
    an error row); a pattern naming nothing that exists, or a glob, still fails at once."""
    sample_shards(tmp_path / "shards", count=3)
    (tmp_path / "shards" / "00001.tar").unlink()
    out = tmp_path / "tags.parquet"
    common = ["--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    result = CliRunner().invoke(app, ["run", str(tmp_path / "shards" / "{00000..00002}.tar"), *common])
    assert result.exit_code == 0, result.output
    rows = pd.read_parquet(out).set_index("path")
    assert "cannot read this tar shard" in rows.loc["00001.tar", "error"] and len(rows) == 5
    none = CliRunner().invoke(app, ["run", str(tmp_path / "shards" / "{00005..00006}.tar"), *common])
    assert none.exit_code == 2 and "(from " in none.stderr and "2 names, none there)" in none.stderr
    glob = CliRunner().invoke(app, ["run", str(tmp_path / "shards" / "*.tar"), *common])
    assert glob.exit_code == 2 and "* and ? are the shell's: leave them unquoted" in glob.stderr


def test_globs_and_keep_errors_never_hide_a_shards_state(tmp_path: Path, ramplus_tiny) -> None:
    """(Review) A whole shard's error row went through --include: a damaged shard's row was dropped,
    a missing one left none; under --keep-errors a member damaged once kept its error row after the
    shard was whole again; a pattern over the wrong folder ran with 99 error rows."""
    def run(*extra: str) -> pd.DataFrame:
        result = CliRunner().invoke(app, ["run", *extra, "--out", str(out), "--workers", "0",
                                          *ramplus_tiny.cli_args()])
        assert result.exit_code == 0, result.output
        return pd.read_parquet(out).set_index("path")

    shard = write_shard(tmp_path / "shards" / "00000.tar", [(f"{n}.jpg", _jpeg(size=(64, 48))) for n in range(4)])
    whole = shard.read_bytes()
    out = tmp_path / "tags.parquet"
    shard.write_bytes(whole[:6144])  # cut after its last member
    assert "cut short" in run(str(tmp_path / "shards")).loc["00000.tar", "error"]
    assert "cut short" in run(str(tmp_path / "shards"), "--include", "*.jpg").loc["00000.tar", "error"]
    missing = str(tmp_path / "shards" / "{00000..00002}.tar")
    sample_shards(tmp_path / "more", count=3)
    for name in ("00001.tar", "00002.tar"):
        (tmp_path / "more" / name).rename(tmp_path / "shards" / name)
    (tmp_path / "shards" / "00001.tar").unlink()
    assert "cannot read this tar shard" in run(missing, "--include", "*.jpg").loc["00001.tar", "error"]

    out = tmp_path / "keep.parquet"
    shard.write_bytes(whole)
    run(str(shard), "--keep-errors")
    shard.write_bytes(whole[:2048 + 300])  # a failed re-download
    assert "ends inside this member" in run(str(shard), "--keep-errors").loc["00000.tar/1", "error"]
    shard.write_bytes(whole)  # downloaded again, whole: the shard changed, its member's error is retried
    assert run(str(shard), "--keep-errors")["error"].isna().all()

    wrong = CliRunner().invoke(app, ["run", str(tmp_path / "shards" / "{00000..00099}.tar"), "--out", str(out),
                                     *ramplus_tiny.cli_args()])
    assert wrong.exit_code == 2 and "98 not there; a pattern may miss a few shards" in wrong.stderr, wrong.stderr


def test_a_shard_without_images_is_not_read_again_either(
    tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    sample_shards(tmp_path / "shards", count=1)
    write_shard(tmp_path / "shards" / "00001.tar", [("a.json", b"{}"), ("a.txt", b"a caption")])
    out = tmp_path / "tags.parquet"
    args = ["run", str(tmp_path / "shards"), "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
    assert CliRunner().invoke(app, args).exit_code == 0
    opened: list[str] = []
    real_open = TarShard.open
    monkeypatch.setattr(TarShard, "open", lambda shard: opened.append(shard.name) or real_open(shard))
    result = CliRunner().invoke(app, args)
    assert opened == [] and "nothing new to tag: 2 images found" in result.stderr, result.stderr
    write_shard(tmp_path / "shards" / "00001.tar", [("b.jpg", _jpeg())])  # images added to it since
    result = CliRunner().invoke(app, args)
    assert opened == ["00001.tar"] and "00001.tar/b" in set(pd.read_parquet(out)["path"]), result.stderr
