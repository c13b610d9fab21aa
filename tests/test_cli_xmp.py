"""``ramtag run --xmp`` and ``ramtag xmp clean`` end to end: the tiny RAM++ fixture, real exiftool."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ramtag.cli.app import app

from test_xmp import (  # tests/ is on sys.path (pytest rootdir import)
    DARKTABLE,
    LIGHTROOM,
    element,
    exiftool_everything_but_keywords,
    exiftool_keywords,
    needs_exiftool,
)

runner = CliRunner()
# Small fixture images (fast to decode) and where their tags are expected.
IMAGES = ("demo4.jpg", "synth_rgba.png", "synth_cmyk.jpg")


def ramtag(*args: str | Path):
    result = runner.invoke(app, list(map(str, args)))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(autouse=True)
def converted_once(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """One cache for the module: the tiny checkpoint is converted once, not in every test."""
    monkeypatch.setenv("RAMTAG_CACHE", str(tmp_path_factory.getbasetemp() / "xmp-cli-cache"))


@pytest.fixture
def photos(tmp_path: Path, ramplus_tiny) -> Path:
    """Three images: one with a Lightroom sidecar (IMG.xmp), one with darktable's (IMG.ext.xmp), one bare."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in IMAGES:
        shutil.copyfile(ramplus_tiny.images / name, folder / name)
    (folder / "demo4.xmp").write_text(LIGHTROOM, encoding="utf-8")
    (folder / "synth_rgba.png.xmp").write_text(DARKTABLE, encoding="utf-8")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@needs_exiftool
def test_run_twice_then_clean(photos: Path, ramplus_tiny, tmp_path: Path) -> None:
    expected = ramplus_tiny.expected["images"]
    before = snapshot(photos)
    originals = tmp_path / "originals"
    shutil.copytree(photos, originals)
    args = ["run", photos, "--xmp", "--workers", "0", *ramplus_tiny.cli_args()]
    result = ramtag(*args)
    assert result.exit_code == 0, result.output
    assert "3 images: 3 tagged, 0 errors" in result.stderr and result.stdout == ""  # the sidecars are the output
    first = snapshot(photos)
    assert sorted(first) == sorted([*before, "synth_cmyk.jpg.xmp"])
    for name in IMAGES:
        assert first[name] == before[name]  # images untouched
    sidecars = {"demo4.jpg": "demo4.xmp", "synth_rgba.png": "synth_rgba.png.xmp", "synth_cmyk.jpg": "synth_cmyk.jpg.xmp"}
    for image, sidecar in sidecars.items():
        found = exiftool_keywords(photos / sidecar)
        tags = expected[image]["tags"]
        was = exiftool_keywords(originals / sidecar) if (originals / sidecar).exists() else {}
        assert set(found["Subject"]) == set(was.get("Subject", [])) | set(tags)
        theirs = {keyword.casefold() for keyword in was.get("Subject", [])}  # a tag they have is not added again
        assert set(found["HierarchicalSubject"]) >= {f"ramtag|{tag}" for tag in tags if tag.casefold() not in theirs}
        assert set(found["TagsList"]) >= {f"ramtag/{tag}" for tag in tags if tag.casefold() not in theirs}
        assert set(found["HierarchicalSubject"]) >= set(was.get("HierarchicalSubject", []))  # a person's kept
        for values in found.values():
            assert len(values) == len(set(values)), values  # no duplicates
        if was:
            assert exiftool_everything_but_keywords(photos / sidecar) == exiftool_everything_but_keywords(originals / sidecar)
    lightroom, darktable = first["demo4.xmp"].decode(), first["synth_rgba.png.xmp"].decode()
    assert "<rdf:li>Grandma's garden</rdf:li>" in element(lightroom, "dc:subject")
    assert element(LIGHTROOM, "crs:ToneCurvePV2012") in lightroom
    assert element(DARKTABLE, "darktable:history") in darktable
    assert DARKTABLE[: DARKTABLE.index("<dc:subject>")] in darktable  # darktable's settings, byte for byte

    result = ramtag(*args)
    assert result.exit_code == 0, result.output
    assert "skipped 3 images whose sidecar is up to date" in result.stderr
    assert snapshot(photos) == first  # the second run is a no-op

    result = ramtag("xmp", "clean", photos)
    assert result.exit_code == 0, result.output
    assert "3 sidecars: 2 cleaned, 1 deleted" in result.stderr
    assert f"deleted: {photos / 'synth_cmyk.jpg.xmp'}" in result.stdout
    assert snapshot(photos) == before  # back to the very bytes
    for sidecar in ("demo4.xmp", "synth_rgba.png.xmp"):
        assert exiftool_keywords(photos / sidecar) == exiftool_keywords(originals / sidecar)


@needs_exiftool
def test_awkward_and_chinese_tags_come_out_intact(tmp_path: Path, ramplus_tiny) -> None:
    english = ramplus_tiny.tags.read_text(encoding="utf-8").split()
    english[:4] = ["rock & roll", "<b>bold</b>", 'say "hi"', "it's"]
    tag_list = tmp_path / "tags.txt"
    tag_list.write_text("\n".join(english) + "\n", encoding="utf-8")
    chinese = ramplus_tiny.tags_zh.read_text(encoding="utf-8").split()
    chinese[0] = "猫 & <狗>"
    tag_list_zh = tmp_path / "tags_zh.txt"
    tag_list_zh.write_text("\n".join(chinese) + "\n", encoding="utf-8")
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", folder / "demo4.jpg")
    result = ramtag(
        "run", folder, "--xmp", "--lang", "both", "--threshold", "0", "--xmp-parent", "",
        "--workers", "0", "--checkpoint", ramplus_tiny.checkpoint,
        "--tag-list", tag_list, "--tag-list-zh", tag_list_zh,
    )
    assert result.exit_code == 0, result.output
    found = exiftool_keywords(folder / "demo4.jpg.xmp")
    names = set(english) | set(chinese)
    assert set(found["Subject"]) == names and len(found["Subject"]) == 32
    assert set(found["HierarchicalSubject"]) == names == set(found["TagsList"])  # top level: no parent


def test_sidecars_beside_an_output_file_and_a_broken_one(photos: Path, ramplus_tiny, tmp_path: Path) -> None:
    out = tmp_path / "tags.parquet"
    (photos / "demo4.xmp").write_text("<x:xmpmeta><rdf:RDF>", encoding="utf-8")  # not XML any more
    args = ["run", photos, "--xmp", "--out", out, "--workers", "0", *ramplus_tiny.cli_args()]
    result = ramtag(*args)
    assert result.exit_code == 0, result.output
    assert "3 images: 2 tagged, 1 error in " in result.stderr
    rows = pd.read_parquet(out).set_index("path")
    assert rows.loc["demo4.jpg", "error"].startswith("sidecar demo4.xmp: not valid XML")
    assert (photos / "demo4.xmp").read_text(encoding="utf-8") == "<x:xmpmeta><rdf:RDF>"
    assert rows["error"].isna().sum() == 2

    (photos / "synth_cmyk.jpg.xmp").unlink()  # tagged again for its sidecar, not added to tags.parquet twice
    (photos / "demo4.xmp").write_text(LIGHTROOM, encoding="utf-8")
    result = ramtag(*args)
    assert result.exit_code == 0, result.output
    assert (photos / "synth_cmyk.jpg.xmp").is_file()
    assert "ramtag|" in (photos / "demo4.xmp").read_text(encoding="utf-8")
    again = pd.read_parquet(out)
    assert len(again) == 3 and sorted(again["path"]) == sorted(IMAGES)


def test_naming_parent_and_stdout(photos: Path, ramplus_tiny) -> None:
    args = ["--workers", "0", *ramplus_tiny.cli_args()]
    result = ramtag("run", photos, "--xmp", "--xmp-naming", "replace", "--xmp-parent", "auto|ramtag", "--format", "jsonl", *args)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(row["path"] for row in rows) == sorted(IMAGES)  # --format: rows on stdout as well
    names = {p.name for p in photos.iterdir()}
    assert {"demo4.xmp", "synth_rgba.xmp", "synth_cmyk.xmp"} <= names and "synth_cmyk.jpg.xmp" not in names
    text = (photos / "synth_cmyk.xmp").read_text(encoding="utf-8")
    assert "<rdf:li>auto|ramtag|dog</rdf:li>" in text and "<rdf:li>auto/ramtag/dog</rdf:li>" in text
    assert (photos / "synth_rgba.png.xmp").read_text(encoding="utf-8") == DARKTABLE  # replace naming left it
    result = ramtag("run", photos, "--xmp", "--xmp-parent", "|bad", *args)
    assert result.exit_code == 2 and "--xmp-parent" in result.stderr
    result = ramtag("run", photos, "--xmp", "--xmp-parent", "AI/Tags", *args)  # two levels in digiKam, one in Lightroom
    assert result.exit_code == 2 and "levels are separated by '|' ('AI|Tags')" in result.stderr


def test_clean_dry_run_and_errors(photos: Path, ramplus_tiny) -> None:
    assert ramtag("run", photos, "--xmp", "--workers", "0", *ramplus_tiny.cli_args()).exit_code == 0
    tagged = snapshot(photos)
    result = ramtag("xmp", "clean", "--dry-run", photos)
    assert result.exit_code == 0, result.output
    assert "would be cleaned:" in result.stdout and snapshot(photos) == tagged
    assert "3 sidecars: 2 would be cleaned, 1 would be deleted (only ramtag's entries" in result.stderr
    (photos / "broken.xmp").write_text("<x", encoding="utf-8")
    result = ramtag("xmp", "clean", photos / "demo4.xmp", photos / "broken.xmp")
    assert result.exit_code == 1
    assert "broken.xmp: not valid XML" in result.stderr and "1 cleaned" in result.stderr
    assert (photos / "demo4.xmp").read_text(encoding="utf-8") == LIGHTROOM
    assert ramtag("xmp", "clean", photos / "nowhere").exit_code == 2


def test_switching_naming_keeps_the_earlier_sidecars_up_to_date(tmp_path: Path, ramplus_tiny) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", folder / "demo4.jpg")
    args = ["--workers", "0", *ramplus_tiny.cli_args()]
    assert ramtag("run", folder, "--xmp", "--xmp-naming", "ext", *args).exit_code == 0
    result = ramtag("run", folder, "--xmp", "--xmp-naming", "replace", "--top-k", "1", *args)
    assert result.exit_code == 0, result.output
    assert "1 XMP sidecar written; 1 of the other --xmp-naming, from an earlier run, updated too" in result.stderr
    ext, replace = ((folder / name).read_text(encoding="utf-8") for name in ("demo4.jpg.xmp", "demo4.xmp"))
    # Both hold the top tag alone: in lr:hierarchicalSubject, and in ramtag's record of what it added.
    assert ext.count("<rdf:li>ramtag|") == replace.count("<rdf:li>ramtag|") == 2


def test_a_sidecar_that_is_a_symbolic_link_stays_one(tmp_path: Path, ramplus_tiny) -> None:
    """It was replaced by a regular file: the link gone, the file it pointed to left stale."""
    folder, store = tmp_path / "photos", tmp_path / "store"
    folder.mkdir()
    store.mkdir()
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", folder / "demo4.jpg")
    (store / "demo4.xmp").write_text(LIGHTROOM, encoding="utf-8")
    (folder / "demo4.xmp").symlink_to(store / "demo4.xmp")
    result = ramtag("run", folder, "--xmp", "--workers", "0", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    assert (folder / "demo4.xmp").is_symlink() and "ramtag|" in (store / "demo4.xmp").read_text(encoding="utf-8")
    assert ramtag("xmp", "clean", folder).exit_code == 0
    assert (folder / "demo4.xmp").is_symlink() and (store / "demo4.xmp").read_text(encoding="utf-8") == LIGHTROOM
