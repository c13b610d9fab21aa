"""Keywords embedded in photos (``run --embed``) through real ExifTool: every format, kept safe."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from ramtag.cli.app import app
from ramtag.errors import OutputError
from ramtag.exiftool import ExifTool
from ramtag.outputs.embedded import EmbedWriter, clean_embedded, holds_ramtag_record, read_held
from ramtag.outputs.rewriting import same_pixels, temporary_path
from ramtag.outputs.sidecars import Provenance
from ramtag.tagger import TagResult

from rawfiles import dng_with_preview
from test_xmp import EXIFTOOL, needs_exiftool
from conftest import REPO

pytestmark = needs_exiftool
runner = CliRunner()
FORMATS = ("jpg", "tif", "png", "webp", "heic", "avif", "dng")
IPTC_FORMATS = ("jpg", "tif")
# Where the image data sits in the file: exiftool may move it, the pixels stay the same.
LAYOUT = ("StripOffsets", "MediaDataOffset", "TileOffsets")
PROVENANCE = Provenance("ram_plus", "0" * 64, "0.68", "settings-1")
RESULT = TagResult(["dog", "grass", "狗"], [0.91, 0.8, 0.7], None, None)


@pytest.fixture(autouse=True)
def converted_once(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMTAG_CACHE", str(tmp_path_factory.getbasetemp() / "embed-cli-cache"))


@pytest.fixture(scope="module")
def tool():
    with ExifTool() as running:
        yield running


def photo(folder: Path, kind: str, source: Path, name: str = "photo") -> Path:
    """``source`` saved as ``kind`` by Pillow (pillow-heif for HEIC), or as a DNG with a preview."""
    picture = Image.open(source).convert("RGB").resize((320, 240))
    path = folder / f"{name}.{kind}"
    if kind == "dng":
        return dng_with_preview(path, picture, picture)
    if kind == "heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
    picture.save(path, quality=85) if kind in ("jpg", "webp", "heic", "avif") else picture.save(path)
    return path


def keywords(path: Path) -> dict[str, list[str]]:
    out = subprocess.run(
        [EXIFTOOL, "-j", "-charset", "utf8", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject",
         "-XMP-digiKam:TagsList", "-IPTC:Keywords", str(path)], check=True, capture_output=True,
    ).stdout
    found = json.loads(out, parse_int=str, parse_float=str)[0]  # "1.50" stays "1.50"
    found.pop("SourceFile")
    return {key: [str(v) for v in value] if isinstance(value, list) else [str(value)] for key, value in found.items()}


def listing(path: Path) -> list[str]:
    """exiftool -a -G1 of the file, without the file system's entries and the data's offsets."""
    out = subprocess.run([EXIFTOOL, "-a", "-G1", "-s", str(path)], check=True, capture_output=True, text=True).stdout
    return [
        line for line in out.splitlines()
        if not line.startswith(("[System]", "[ExifTool]")) and line.split()[1] not in LAYOUT
    ]


@pytest.mark.parametrize("kind", FORMATS)
def test_keywords_go_in_every_field_once_and_clean_gives_the_file_back(
    tmp_path: Path, ramplus_tiny, tool: ExifTool, kind: str
) -> None:
    path = photo(tmp_path, kind, ramplus_tiny.images / "demo4.jpg")
    original = tmp_path / f"original.{kind}"
    shutil.copyfile(path, original)
    before, stat_before = listing(path), path.stat()
    writer = EmbedWriter(PROVENANCE, tool=tool)
    assert writer.update(path, RESULT)
    found = keywords(path)
    assert found["Subject"] == ["dog", "grass", "狗"]
    assert found["HierarchicalSubject"] == ["ramtag|dog", "ramtag|grass", "ramtag|狗"]
    assert found["TagsList"] == ["ramtag/dog", "ramtag/grass", "ramtag/狗"]
    if kind in IPTC_FORMATS:
        assert found["Keywords"] == ["dog", "grass", "狗"]  # IPTC declared UTF-8, as ramtag created it
    else:
        assert "Keywords" not in found
    assert same_pixels(original, path)
    assert path.stat().st_mtime_ns == stat_before.st_mtime_ns  # the photo keeps its date
    assert holds_ramtag_record(path) and not holds_ramtag_record(original)  # seen without ExifTool too
    written = path.read_bytes()
    assert not writer.update(path, RESULT)  # the same settings: not one byte changes
    assert path.read_bytes() == written
    assert not temporary_path(path).exists()

    assert clean_embedded(tool, path) == "cleaned"
    assert same_pixels(original, path)
    assert listing(path) == before
    if kind in ("jpg", "tif", "png", "webp"):
        assert path.read_bytes() == original.read_bytes()
    assert clean_embedded(tool, path) == "untouched"


def test_a_persons_keywords_survive_and_new_settings_replace_only_ramtags(tmp_path: Path, ramplus_tiny, tool) -> None:
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Holiday 2024", "-XMP-dc:Subject=dog",
                    "-IPTC:Keywords=Holiday 2024", "-XMP-xmp:Rating=4", str(path)], check=True)
    original = path.read_bytes()
    before = listing(path)
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    found = keywords(path)
    assert found["Subject"] == ["Holiday 2024", "dog", "grass", "狗"]  # 'dog' was the person's already
    assert found["Keywords"] == ["Holiday 2024", "dog", "grass"]  # IPTC not declared UTF-8: Chinese stays in XMP
    newer = Provenance("ram_plus", "0" * 64, "0.68", "settings-2")
    EmbedWriter(newer, tool=tool).update(path, TagResult(["cat"], [0.9], None, None))
    assert keywords(path)["Subject"] == ["Holiday 2024", "dog", "cat"]  # the person's 'dog' stays
    assert clean_embedded(tool, path) == "cleaned"
    assert listing(path) == before and path.read_bytes() == original


def test_mode_is_kept_a_read_only_photo_is_refused_and_touch_dates_it(tmp_path: Path, ramplus_tiny, tool) -> None:
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    os.chmod(path, 0o640)
    os.utime(path, (1_600_000_000, 1_600_000_000))
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    assert path.stat().st_mode & 0o777 == 0o640 and path.stat().st_mtime == 1_600_000_000
    EmbedWriter(Provenance("ram_plus", "", "0.5", "other"), tool=tool, touch=True).update(path, RESULT)
    assert path.stat().st_mtime > time.time() - 60

    locked = photo(tmp_path, "png", ramplus_tiny.images / "demo4.jpg", "locked")
    os.chmod(locked, 0o444)
    data = locked.read_bytes()
    from ramtag.outputs.embedded import EmbedError

    with pytest.raises(EmbedError, match="read-only"):
        EmbedWriter(PROVENANCE, tool=tool).update(locked, RESULT)
    assert locked.read_bytes() == data and not temporary_path(locked).exists()


def test_a_full_disk_stops_with_the_photo_untouched(tmp_path: Path, ramplus_tiny, tool, monkeypatch) -> None:
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    data = path.read_bytes()
    real = shutil.copyfile

    def half_then_full(source, dest):
        Path(dest).write_bytes(Path(source).read_bytes()[:1000])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", half_then_full)
    with pytest.raises(OutputError, match="disk is full"):
        EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    monkeypatch.setattr(shutil, "copyfile", real)
    assert path.read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]  # no half-written copy left


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ramtag.outputs.embedded import EmbedWriter
    from ramtag.outputs.sidecars import Provenance
    from types import SimpleNamespace

    writer = EmbedWriter(Provenance("ram_plus", "", "0.68", sys.argv[1]))
    result = SimpleNamespace(tags=["dog", "grass"], scores=[0.9, 0.8], tags_zh=None)  # no torch to import
    print("ready", flush=True)
    while True:
        for path in sorted(Path(sys.argv[2]).glob("[!.]*")):
            writer.update(path, result)
        writer.provenance = Provenance("ram_plus", "", "0.68", writer.provenance.settings + "+")
    """
)


def test_sigkill_while_writing_leaves_every_photo_whole(tmp_path: Path, ramplus_tiny) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    originals = {}
    for number, kind in enumerate(("jpg", "png", "tif", "webp") * 2):
        path = photo(folder, kind, ramplus_tiny.images / "demo4.jpg", f"p{number}")
        originals[path.name] = tmp_path / f"copy-{path.name}"
        shutil.copyfile(path, originals[path.name])
    for attempt in range(3):
        process = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, f"s{attempt}", str(folder)],
                                   stdout=subprocess.PIPE, text=True)
        assert process.stdout.readline().strip() == "ready"
        time.sleep(0.3 + 0.37 * attempt)  # some photos written, one in hand
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        for path in sorted(folder.glob("[!.]*")):
            assert same_pixels(originals[path.name], path), path  # the original or a complete rewrite
            assert "Subject" not in keywords(path) or keywords(path)["Subject"] == ["dog", "grass"]
    # a hidden copy may be left beside a photo; the next write (or clean) removes it
    with ExifTool() as tool:
        for path in sorted(folder.glob("[!.]*")):
            clean_embedded(tool, path)
            assert path.read_bytes() == originals[path.name].read_bytes()
    assert not list(folder.glob(".*"))


def ramtag(*args: str | Path):
    result = runner.invoke(app, list(map(str, args)))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_run_embed_with_a_raw_jpeg_pair_and_an_output_then_clean(tmp_path: Path, ramplus_tiny) -> None:
    from rawfiles import plain_dng

    photos = tmp_path / "photos"
    photos.mkdir()
    plain_dng(photos / "IMG_1.CR2", Image.open(ramplus_tiny.images / "demo2.jpg").convert("RGB").resize((800, 600)))
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / "IMG_1.JPG")
    os.chmod(photos / "IMG_1.JPG", 0o644)
    locked = photos / "locked.png"
    Image.open(ramplus_tiny.images / "demo3.jpg").save(locked)
    os.chmod(locked, 0o444)
    before = {path.name: path.read_bytes() for path in photos.iterdir()}
    out = tmp_path / "tags.jsonl"
    result = ramtag("run", photos, "--embed", "--out", out, *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    rows = {row["path"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert keywords(photos / "IMG_1.JPG")["Subject"] == rows["IMG_1.JPG"]["tags"]
    assert photos.joinpath("IMG_1.CR2").read_bytes() == before["IMG_1.CR2"]  # a proprietary raw is never written
    assert set(keywords(photos / "IMG_1.CR2.xmp")["Subject"]) == set(rows["IMG_1.CR2"]["tags"])
    assert "read-only" in rows["locked.png"]["error"] and locked.read_bytes() == before["locked.png"]
    assert "keywords written into 1 photo; 1 XMP sidecar written" in result.stderr

    again = ramtag("run", photos, "--embed", *ramplus_tiny.cli_args())
    assert again.exit_code == 0 and "skipped 2 images whose sidecar or embedded keywords are up to date" in again.stderr
    # The read-only photo is not tagged again only to be refused: counted, and said.
    assert "1 read-only photo not written into (chmod u+w lets ramtag write keywords" in again.stderr

    cleaned = ramtag("xmp", "clean", photos)
    assert cleaned.exit_code == 0, cleaned.output
    assert {path.name: path.read_bytes() for path in photos.iterdir()} == before


def test_clean_without_exiftool_finds_the_photos_ramtag_wrote_into_and_fails(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / name)
    assert ramtag("run", photos / "a.jpg", "--embed", *ramplus_tiny.cli_args()).exit_code == 0
    before = {path.name: path.read_bytes() for path in photos.iterdir()}
    monkeypatch.setenv("RAMTAG_EXIFTOOL", str(tmp_path / "no-exiftool"))
    result = ramtag("xmp", "clean", photos)
    assert result.exit_code == 1  # a.jpg still holds ramtag's keywords: the clean is not done
    assert f"not cleaned: 1 photo with keywords ramtag embedded (the first: {photos / 'a.jpg'}); cleaning photos " \
           "needs ExifTool" in result.stderr
    assert {path.name: path.read_bytes() for path in photos.iterdir()} == before
    (photos / "a.jpg").unlink()
    assert ramtag("xmp", "clean", photos).exit_code == 0  # b.jpg: nothing of ramtag's to clean


def test_embed_added_to_an_existing_output_records_the_photos_as_written(tmp_path: Path, ramplus_tiny) -> None:
    """An output made without --embed, then --embed: the rows take the photos as written, so the
    next run finds them unchanged (it re-tagged every photo as changed)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a.jpg", "b.jpg"):
        shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / name)
    out = tmp_path / "tags.parquet"
    args = ("run", photos, "--out", out, *ramplus_tiny.cli_args())
    assert ramtag(*args).exit_code == 0
    embedded = ramtag(*args, "--embed")
    assert embedded.exit_code == 0 and "keywords written into 2 photos" in embedded.stderr, embedded.output
    assert "or whose sidecar or embedded keywords are not up to date" in embedded.stderr  # why both are tagged
    rows = pd.read_parquet(out)
    assert sorted(rows["path"]) == ["a.jpg", "b.jpg"]  # no second row for either
    assert {row.path: row.file_size for row in rows.itertuples()} == {
        name: (photos / name).stat().st_size for name in ("a.jpg", "b.jpg")}
    again = ramtag(*args, "--embed")
    assert again.exit_code == 0 and "nothing new to tag" in again.stderr, again.output


def test_a_run_of_read_only_photos_alone_says_nothing_was_done(tmp_path: Path, ramplus_tiny) -> None:
    locked = tmp_path / "locked.jpg"
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", locked)
    os.chmod(locked, 0o444)
    result = ramtag("run", locked, "--embed", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    assert "nothing tagged (" in result.stderr and "done already" not in result.stderr  # it never was
    assert "1 read-only photo not written into" in result.stderr


def test_with_xmp_too_a_read_only_photo_gets_its_sidecar_and_its_row_its_tags(tmp_path: Path, ramplus_tiny) -> None:
    """--embed --xmp: the sidecar a read-only photo cannot do without (what the refusal suggests);
    it got neither, and its row in --out an error instead of its tags."""
    locked = tmp_path / "photos" / "locked.jpg"
    locked.parent.mkdir()
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", locked)
    os.chmod(locked, 0o444)
    before = locked.read_bytes()
    out = tmp_path / "tags.jsonl"
    result = ramtag("run", locked.parent, "--embed", "--xmp", "--out", out, *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text().splitlines()[0])
    assert row["error"] is None and row["tags"]
    assert set(keywords(tmp_path / "photos" / "locked.jpg.xmp")["Subject"]) == set(row["tags"])
    assert locked.read_bytes() == before
    assert "1 read-only photo not written into (chmod u+w lets ramtag write keywords; their sidecars have them)" \
        in " ".join(result.stderr.split())
    assert "(for camera raws" not in result.stderr  # the sidecar was asked for with --xmp


def test_with_xmp_too_a_photo_exiftool_cannot_write_gets_its_sidecar_and_its_row_its_tags(
    tmp_path: Path, ramplus_tiny
) -> None:
    """A PNG named .jpg (phone exports): it lost its sidecar and its tags to the embed's error."""
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(ramplus_tiny.images / "demo4.jpg").save(photos / "png.jpg", "PNG")
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / "fine.jpg")
    before = (photos / "png.jpg").read_bytes()
    out = tmp_path / "tags.jsonl"
    result = ramtag("run", photos, "--embed", "--xmp", "--out", out, *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    rows = {row["path"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert rows["png.jpg"]["error"] is None and rows["png.jpg"]["tags"]
    assert set(keywords(photos / "png.jpg.xmp")["Subject"]) == set(rows["png.jpg"]["tags"])
    assert (photos / "png.jpg").read_bytes() == before and keywords(photos / "fine.jpg")["Subject"]
    said = " ".join(result.stderr.split())
    assert "1 photo --embed could not write into (their sidecars have the keywords)" in said
    assert "looks more like a PNG" in said and "rename it" in said
    alone = ramtag("run", photos, "--embed", "--overwrite", "--out", out, *ramplus_tiny.cli_args())
    assert alone.exit_code == 0, alone.output
    rows = {row["path"]: row for row in map(json.loads, out.read_text().splitlines())}
    assert rows["png.jpg"]["error"].startswith("--embed: exiftool could not write it")  # without --xmp: its row's error


def test_clean_of_a_read_only_photo_says_so_in_its_dry_run_too(tmp_path: Path, ramplus_tiny) -> None:
    photo = tmp_path / "a.jpg"
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photo)
    assert ramtag("run", photo, "--embed", *ramplus_tiny.cli_args()).exit_code == 0
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", tmp_path / "b.bmp")  # and a sidecar to clean
    assert ramtag("run", tmp_path / "b.bmp", "--xmp", *ramplus_tiny.cli_args()).exit_code == 0
    os.chmod(photo, 0o444)
    for dry in (["--dry-run"], []):
        cleaned = ramtag("xmp", "clean", tmp_path, *dry)
        assert cleaned.exit_code == 1, cleaned.output
        assert f"{photo}: the file is read-only: ramtag does not change it (make it writable with chmod u+w)" \
            in cleaned.stderr and "--xmp" not in cleaned.stderr  # no sidecars to suggest to a clean
        assert "would be cleaned: " not in cleaned.stdout
        said = " ".join(cleaned.stderr.split())
        assert "0 photos" in said and "cleaned of embedded keywords, 0 without them, 1 error" in said
        assert "without ramtag entries, 0 errors" in said  # the photo's error was counted among the sidecars' too


def test_embed_without_exiftool_fails_before_loading(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    monkeypatch.setenv("RAMTAG_EXIFTOOL", str(tmp_path / "no-exiftool"))
    (tmp_path / "a.jpg").write_bytes((ramplus_tiny.images / "demo4.jpg").read_bytes())
    result = ramtag("run", tmp_path / "a.jpg", "--embed", *ramplus_tiny.cli_args())
    assert result.exit_code == 2
    assert "ExifTool" in result.stderr and "apt install libimage-exiftool-perl" in result.stderr


def test_a_symbolic_link_stays_a_link(tmp_path: Path, ramplus_tiny, tool) -> None:
    real = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg", "real")
    link = tmp_path / "link.jpg"
    link.symlink_to(real.name)
    EmbedWriter(PROVENANCE, tool=tool).update(link, RESULT)
    assert link.is_symlink() and keywords(real)["Subject"] == ["dog", "grass", "狗"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jpg", "real.jpg"]


def test_a_persons_odd_keywords_are_kept_exactly(tmp_path: Path, ramplus_tiny, tool) -> None:
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg", "#selects")  # '#' starts a comment line
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=1.50", "-XMP-dc:Subject=1e3",
                    "-XMP-dc:Subject=-dash, comma; semi", str(path)], check=True)
    before = keywords(path)["Subject"]
    assert before == ["1.50", "1e3", "-dash, comma; semi"]
    original = path.read_bytes()
    os.chdir(tmp_path)
    EmbedWriter(PROVENANCE, tool=tool).update(Path(path.name), RESULT)  # a relative name, as a user types it
    assert keywords(path)["Subject"] == [*before, "dog", "grass", "狗"]  # after the person's own, unchanged
    clean_embedded(tool, Path(path.name))
    assert path.read_bytes() == original


def test_a_photo_saved_by_another_program_meanwhile_is_not_overwritten(tmp_path, ramplus_tiny, tool, monkeypatch) -> None:
    import ramtag.outputs.rewriting as rewriting
    from ramtag.outputs.embedded import EmbedError

    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    check = rewriting._check_pixels

    def lightroom_saves_meanwhile(original, copy):
        check(original, copy)
        subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-xmp:Rating=5", str(original)], check=True)

    monkeypatch.setattr(rewriting, "_check_pixels", lightroom_saves_meanwhile)
    with pytest.raises(EmbedError, match="another program changed it"):
        EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    assert "Subject" not in keywords(path)  # the other program's save stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg"]


def test_an_iptc_block_without_record_versions_gets_its_bytes_back(tmp_path: Path, ramplus_tiny, tool) -> None:
    # The fixture's demo3.jpg has IPTC (UTF-8, a date) but no EnvelopeRecordVersion, which exiftool
    # adds when it writes keywords there: clean must take that out again.
    path = tmp_path / "demo3.jpg"
    shutil.copyfile(ramplus_tiny.images / "demo3.jpg", path)
    os.chmod(path, 0o644)
    assert "IPTC:EnvelopeRecordVersion" not in read_held(tool, path).tags and read_held(tool, path).has("IPTC")
    original = path.read_bytes()
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    assert keywords(path)["Keywords"] == ["dog", "grass", "狗"]  # declared UTF-8 there already
    stored, current = digests(path)
    assert stored == current  # Photoshop's digest was current, and is again
    assert clean_embedded(tool, path) == "cleaned"
    assert path.read_bytes() == original


@pytest.mark.skipif(os.name != "posix", reason="process groups and killpg are POSIX's")
def test_ctrl_c_at_the_terminal_leaves_exiftool_running_for_the_batch_in_hand() -> None:
    # A terminal's Ctrl-C goes to its whole foreground process group, and exiftool exits on SIGINT
    # (it installs its own handler): run in a group of its own, it is there to finish the batch.
    script = (  # Python's own Ctrl-C handler, as at a terminal (a shell's background job inherits SIGINT ignored)
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from ramtag.exiftool import ExifTool\n"
        "tool = ExifTool()\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    time.sleep(0.5)\n"
        "    print('after', tool.run('-ver').stdout.strip(), flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "ready"
        os.killpg(process.pid, signal.SIGINT)  # what the terminal does
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert out.startswith("after ") and out.split()[1][0].isdigit(), err


def digests(path: Path) -> tuple[str, str]:
    """The Photoshop block's IPTCDigest, and the digest of the IPTC as it is now."""
    found = json.loads(subprocess.run([EXIFTOOL, "-j", "-IPTCDigest", "-CurrentIPTCDigest", str(path)],
                                      check=True, capture_output=True).stdout)[0]
    return found.get("IPTCDigest", ""), found["CurrentIPTCDigest"]


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "by-exiftool"])
def test_keywords_in_iptc_alone_join_xmp_and_a_current_digest_stays_current(
    tmp_path: Path, ramplus_tiny, tool, monkeypatch, in_place: bool
) -> None:
    # An older photo: keywords in IPTC only, and a Photoshop block whose digest says XMP is in sync.
    # Readers would take ramtag's new dc:subject alone, and take a stale digest to mean a legacy edit.
    import ramtag.outputs.rewriting as rewriting

    if not in_place:  # the digest's resource not where ramtag looks: exiftool writes it
        monkeypatch.setattr(rewriting, "_patch_digest", lambda *args: False)
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:Keywords=person", "-IPTC:Keywords=1.50",
                    "-IPTCDigest=new", str(path)], check=True)
    stored_before, current = digests(path)
    assert stored_before == current
    original = path.read_bytes()
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    found = keywords(path)
    assert found["Subject"] == ["person", "1.50", "dog", "grass", "狗"]
    assert found["Keywords"] == ["person", "1.50", "dog", "grass"]  # this IPTC block is not UTF-8
    assert found["HierarchicalSubject"] == ["person", "1.50", "ramtag|dog", "ramtag|grass", "ramtag|狗"]
    stored, current = digests(path)
    assert stored == current  # up to date: readers take XMP, which holds everything
    assert clean_embedded(tool, path) == "cleaned"
    assert digests(path) == (stored_before, stored_before)
    if in_place:
        assert path.read_bytes() == original


def test_an_iptc_digest_already_out_of_date_is_left_so(tmp_path: Path, ramplus_tiny, tool) -> None:
    # Another program changed IPTC after the digest was written: readers reconcile from IPTC, and
    # ramtag does not hide that by stamping a new digest.
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=person", "-IPTC:Keywords=person",
                    "-IPTCDigest=new", str(path)], check=True)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:Keywords=person", "-IPTC:Keywords=legacy",
                    str(path)], check=True)
    stale, current = digests(path)
    assert stale != current
    original = path.read_bytes()
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    found = keywords(path)
    assert found["Subject"] == ["person", "dog", "grass", "狗"]  # the person's XMP list is theirs to reconcile
    assert found["Keywords"] == ["person", "legacy", "dog", "grass"]
    assert digests(path)[0] == stale
    assert clean_embedded(tool, path) == "cleaned"
    assert path.read_bytes() == original


def test_clean_of_photos_alone_speaks_of_photos_only(tmp_path: Path, ramplus_tiny, tool) -> None:
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    cleaned = ramtag("xmp", "clean", tmp_path)
    assert cleaned.exit_code == 0, cleaned.output
    assert "1 photo cleaned of embedded keywords, 0 without them, 0 errors" in cleaned.stderr
    assert "sidecar" not in cleaned.stderr  # there are none: no "0 sidecars" line
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    dry = ramtag("xmp", "clean", "--dry-run", tmp_path)
    assert dry.stdout == f"would be cleaned: {path}\n"
    assert "1 photo would be cleaned of embedded keywords, 0 without them, 0 errors (dry run: nothing written)" in dry.stderr
    assert ramtag("xmp", "clean", tmp_path).exit_code == 0
    nothing = ramtag("xmp", "clean", tmp_path)
    assert "0 sidecars: 0 cleaned" in nothing.stderr  # nothing done at all: still one line saying so


def test_iptc_keywords_copied_to_xmp_read_as_meant_and_kept_once_the_person_writes_xmp(
    tmp_path: Path, ramplus_tiny, tool
) -> None:
    # Many programs write UTF-8 into IPTC without declaring it; exiftool reads that as Latin-1.
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-charset", "iptc=utf8", "-IPTC:Keywords=café",
                    "-IPTC:Keywords=東京", "-IPTC:Keywords=person", "-IPTCDigest=new", str(path)], check=True)
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    assert keywords(path)["Subject"] == ["café", "東京", "person", "dog", "grass", "狗"]
    # Then the person adds a keyword in software that keeps XMP, IPTC and the digest in step: their
    # keywords live in dc:subject now, and neither a re-run nor clean may take them out of it.
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject+=trip", "-IPTC:Keywords+=trip",
                    "-IPTCDigest=new", str(path)], check=True)
    EmbedWriter(Provenance("ram_plus", "", "0.5", "settings-2"), tool=tool).update(path, TagResult(["cat"], [0.9], None, None))
    assert keywords(path)["Subject"] == ["café", "東京", "person", "trip", "cat"]
    stored, current = digests(path)
    assert stored == current
    assert clean_embedded(tool, path) == "cleaned"
    found = keywords(path)
    assert found["Subject"] == ["café", "東京", "person", "trip"]
    assert "cat" not in found["Keywords"]


def test_latin1_iptc_keywords_in_a_block_declared_utf8_keep_their_bytes(tmp_path: Path, ramplus_tiny, tool) -> None:
    """An older program's Latin-1 keywords under a UTF-8 declaration: exiftool reads each such
    byte as '?', and writing the list back turned the person's 'Café' into 'Caf?' for good."""
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-charset", "iptc=latin", "-IPTC:Keywords=Café",
                    "-IPTC:Keywords=Zürich", str(path)], check=True)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:CodedCharacterSet=UTF8", str(path)], check=True)
    original = path.read_bytes()

    def raw_keywords() -> list[str]:
        done = subprocess.run([EXIFTOOL, "-j", "-b", "-IPTC:Keywords", str(path)], capture_output=True, check=True)
        return json.loads(done.stdout)[0]["Keywords"]

    mine = ["base64:Q2Fm6Q==", "base64:WvxyaWNo"]  # b"Caf\xe9", b"Z\xfcrich"
    assert raw_keywords() == mine
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    assert raw_keywords() == [*mine, "dog", "grass", "狗"]
    assert keywords(path)["Subject"] == ["Café", "Zürich", "dog", "grass", "狗"]  # the copies read as meant
    EmbedWriter(Provenance("ram_plus", "", "0.5", "settings-2"), tool=tool).update(path, TagResult(["cat"], [0.9], None, None))
    assert raw_keywords() == [*mine, "cat"]
    assert clean_embedded(tool, path) == "cleaned"
    assert path.read_bytes() == original


def test_an_iptc_block_ramtag_made_is_not_declared_utf8_over_the_persons_latin1(tmp_path: Path, ramplus_tiny, tool) -> None:
    """ramtag makes the block (ASCII tags: nothing declared), an older program adds 'Café' in
    Latin-1, a re-run brings a Chinese tag: declaring UTF-8 for it made the person's read 'Caf?'."""
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    EmbedWriter(PROVENANCE, tool=tool).update(path, TagResult(["dog"], [0.9], None, None))
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-charset", "iptc=latin", "-IPTC:Keywords+=Café",
                    str(path)], check=True)
    EmbedWriter(Provenance("ram_plus", "", "0.5", "settings-2"), tool=tool).update(path, RESULT)
    done = subprocess.run([EXIFTOOL, "-j", "-b", "-IPTC:all", str(path)], capture_output=True, check=True)
    iptc = json.loads(done.stdout)[0]
    assert "CodedCharacterSet" not in iptc and iptc["Keywords"] == ["dog", "Café", "grass"]  # read as Latin-1
    assert b"Caf\xe9" in path.read_bytes()
    assert "狗" in keywords(path)["Subject"]  # in XMP only


def test_copies_in_the_hierarchy_are_kept_once_the_persons_software_writes_it(tmp_path: Path, ramplus_tiny, tool) -> None:
    # ramtag starts lr:hierarchicalSubject with a copy of the person's 'Holiday 2024'; then Lightroom
    # adds a keyword there: the field is the person's, and clean must not take 'Holiday 2024' out.
    path = photo(tmp_path, "jpg", ramplus_tiny.images / "demo4.jpg")
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Holiday 2024", str(path)], check=True)
    EmbedWriter(PROVENANCE, tool=tool).update(path, RESULT)
    assert "Holiday 2024" in keywords(path)["HierarchicalSubject"]
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-lr:HierarchicalSubject+=Places|Paris",
                    "-XMP-dc:Subject+=Paris", str(path)], check=True)
    assert clean_embedded(tool, path) == "cleaned"
    found = keywords(path)
    assert found["HierarchicalSubject"] == ["Holiday 2024", "Places|Paris"]
    assert found["Subject"] == ["Holiday 2024", "Paris"]
