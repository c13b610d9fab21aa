"""Camera raws: real DNG files (PiDNG, tifffile) decoded by LibRaw, in runs, outputs and sidecars."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from ramtag.cli.app import app
from ramtag.inputs import ImageDecodeError, decode_image, discover, original_size
from ramtag.inputs.raw import DECODED_FROM, RawOptions, is_proprietary_raw

from rawfiles import band_side, dng_with_preview, plain_dng, striped
from test_xmp import exiftool_keywords, needs_exiftool

runner = CliRunner()


@pytest.fixture(autouse=True)
def converted_once(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMTAG_CACHE", str(tmp_path_factory.getbasetemp() / "raw-cli-cache"))


def ramtag(*args: str | Path):
    result = runner.invoke(app, list(map(str, args)))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.mark.parametrize(
    ("orientation", "side", "upright"),
    [(1, "top", (800, 600)), (3, "bottom", (800, 600)), (6, "right", (600, 800)), (8, "left", (600, 800))],
)
def test_demosaic_without_a_preview_is_upright_at_sensor_size(tmp_path: Path, orientation, side, upright) -> None:
    path = plain_dng(tmp_path / "IMG_1.dng", striped(800, 600), orientation=orientation)
    image = decode_image(path)
    assert image.info[DECODED_FROM] == "demosaic"
    assert image.mode == "RGB"
    assert original_size(image) == upright
    assert image.size == upright  # 800x600 at half size would be under the model's 384: full size
    assert band_side(image) == side


@pytest.mark.parametrize("jpeg", [False, True], ids=["rgb-preview", "jpeg-preview"])
@pytest.mark.parametrize(("orientation", "side"), [(1, "top"), (6, "right"), (8, "left")])
def test_a_large_enough_preview_is_used_turned_like_the_raw(tmp_path: Path, orientation, side, jpeg) -> None:
    # The preview differs from the sensor data on purpose (a red band): it shows which one was used.
    preview = striped(640, 480)
    preview.paste((255, 0, 0), (0, 470, 640, 480))
    path = dng_with_preview(tmp_path / "IMG_2.DNG", striped(1000, 750), preview, orientation=orientation, jpeg=jpeg)
    image = decode_image(path)
    assert image.info[DECODED_FROM] == "preview"
    assert sorted(image.size) == [480, 640]
    assert original_size(image) == ((1000, 750) if orientation == 1 else (750, 1000))  # the sensor's
    assert band_side(image) == side
    developed = decode_image(path, raw=RawOptions("demosaic"))
    assert developed.info[DECODED_FROM] == "demosaic"
    assert original_size(developed) == original_size(image)
    assert band_side(developed) == side


def test_a_thumbnail_smaller_than_the_model_input_is_not_used(tmp_path: Path) -> None:
    path = dng_with_preview(tmp_path / "small.dng", striped(800, 600), striped(160, 120))
    assert decode_image(path).info[DECODED_FROM] == "demosaic"
    assert decode_image(path, raw=RawOptions("auto", min_size=100)).info[DECODED_FROM] == "preview"
    # A preview of another shape (one strip of a preview cut in several) is not the picture either.
    strip = dng_with_preview(tmp_path / "strip.dng", striped(800, 600), striped(1600, 400), jpeg=True)
    assert decode_image(strip).info[DECODED_FROM] == "demosaic"


def test_raws_libraw_cannot_read_are_decode_errors(tmp_path: Path) -> None:
    good = dng_with_preview(tmp_path / "good.dng", striped(800, 600), striped(640, 480)).read_bytes()
    (tmp_path / "cut.dng").write_bytes(good[: len(good) // 20])
    (tmp_path / "text.CR2").write_text("not a raw file at all\n" * 10)
    for name in ("cut.dng", "text.CR2"):
        with pytest.raises(ImageDecodeError, match="LibRaw") as caught:
            decode_image(tmp_path / name)
        assert str(tmp_path) not in str(caught.value)  # the caller names the file
    with pytest.raises(ImageDecodeError, match="too large"):
        decode_image(tmp_path / "good.dng", max_pixels=1000)


def test_raw_extensions_are_found_in_any_case(tmp_path: Path) -> None:
    for name in ("a.CR2", "b.nef", "c.Arw", "d.dng", "e.CR3", "f.RAF", "notes.txt", "g.jpg"):
        (tmp_path / name).write_bytes(b"x")
    keys = [ref.key for ref in discover([tmp_path])]
    assert keys == ["a.CR2", "b.nef", "c.Arw", "d.dng", "e.CR3", "f.RAF", "g.jpg"]
    assert is_proprietary_raw("a.CR2") and not is_proprietary_raw("d.DNG") and not is_proprietary_raw("g.jpg")


def test_run_tags_raws_with_sizes_errors_and_the_decoding_recorded(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    scene = Image.open(ramplus_tiny.images / "demo4.jpg").convert("RGB").resize((800, 600))
    dng_with_preview(photos / "IMG_0001.DNG", scene, scene.resize((640, 480)), orientation=6)
    plain_dng(photos / "IMG_0002.dng", scene)
    (photos / "IMG_0003.NEF").write_bytes(b"II*\x00" + b"\x00" * 200)  # a TIFF header, nothing else
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / "IMG_0004.jpg")
    out = tmp_path / "tags.parquet"
    result = ramtag("run", photos, "--out", out, "-q", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    rows = {row["path"]: row for row in table.to_pylist()}
    assert sorted(rows) == ["IMG_0001.DNG", "IMG_0002.dng", "IMG_0003.NEF", "IMG_0004.jpg"]
    assert (rows["IMG_0001.DNG"]["width"], rows["IMG_0001.DNG"]["height"]) == (600, 800)
    assert (rows["IMG_0002.dng"]["width"], rows["IMG_0002.dng"]["height"]) == (800, 600)
    assert rows["IMG_0001.DNG"]["error"] is None and rows["IMG_0001.DNG"]["tags"]
    assert rows["IMG_0002.dng"]["error"] is None and rows["IMG_0002.dng"]["tags"]
    assert "LibRaw" in rows["IMG_0003.NEF"]["error"] and not rows["IMG_0003.NEF"]["tags"]
    # The same scene developed from its sensor data is tagged much like its JPEG.
    jpeg, developed = set(rows["IMG_0004.jpg"]["tags"]), set(rows["IMG_0002.dng"]["tags"])
    assert len(jpeg & developed) >= len(jpeg | developed) / 2
    metadata = json.loads(table.schema.metadata[b"ramtag"])
    assert metadata["raw_decode"] == "auto"
    # How raws are decoded is a setting the output's rows depend on: another one is refused.
    again = ramtag("run", photos, "--out", out, "--raw-decode", "demosaic", *ramplus_tiny.cli_args())
    assert again.exit_code != 0
    assert "raw_decode (auto there, demosaic now)" in again.output


@needs_exiftool
def test_raw_sidecars_are_read_by_exiftool(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    scene = Image.open(ramplus_tiny.images / "demo4.jpg").convert("RGB").resize((800, 600))
    plain_dng(photos / "IMG_0007.CR2.dng", scene)
    result = ramtag("run", photos, "--xmp", "-q", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    sidecar = photos / "IMG_0007.CR2.dng.xmp"
    keywords = exiftool_keywords(sidecar)
    assert keywords["Subject"] and set(keywords["Subject"]) <= set(ramplus_tiny.tags.read_text().split("\n"))


@needs_exiftool
@pytest.mark.parametrize("naming", ["auto", "ext", "replace"])
def test_raw_and_jpeg_of_one_shot_never_share_a_sidecar(tmp_path: Path, ramplus_tiny, naming: str) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    scene = Image.open(ramplus_tiny.images / "demo2.jpg").convert("RGB").resize((800, 600))
    plain_dng(photos / "IMG_1.CR2", scene)  # LibRaw goes by content: a proprietary raw's name will do
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / "IMG_1.JPG")  # another picture on purpose
    if naming == "auto":  # Lightroom has been here: IMG_1.xmp is the raw's
        from test_xmp import LIGHTROOM

        (photos / "IMG_1.xmp").write_text(LIGHTROOM, encoding="utf-8")
    out = tmp_path / "tags.jsonl"
    result = ramtag("run", photos, "--xmp", "--xmp-naming", naming, "--out", out, *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    rows = {row["path"]: row for row in map(json.loads, out.read_text().splitlines())}
    raw_sidecar = photos / ("IMG_1.CR2.xmp" if naming == "ext" else "IMG_1.xmp")
    jpeg_sidecar = photos / "IMG_1.JPG.xmp"
    assert sorted(p.name for p in photos.glob("*.xmp")) == sorted({raw_sidecar.name, jpeg_sidecar.name})
    assert set(exiftool_keywords(raw_sidecar)["Subject"]) >= set(rows["IMG_1.CR2"]["tags"])
    assert set(exiftool_keywords(jpeg_sidecar)["Subject"]) == set(rows["IMG_1.JPG"]["tags"])
    assert rows["IMG_1.CR2"]["tags"] != rows["IMG_1.JPG"]["tags"]  # two pictures: the test can tell them apart
    warnings = [line for line in result.stderr.splitlines() if "RAW+JPEG" in line]
    assert len(warnings) == (0 if naming == "ext" else 1)


def test_a_run_that_finds_no_images_says_why_and_writes_nothing(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for name in ("a.psd", "b.PSD", "notes.txt", "sub/c.mov"):
        (photos / name).write_bytes(b"x")
    out = tmp_path / "tags.parquet"
    result = ramtag("run", photos, "--out", out, *ramplus_tiny.cli_args())
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1  # one line
    assert f"no images found under {photos}/: 4 files skipped (.psd x2, .txt, .mov)" in result.stderr
    assert not out.exists() and list(tmp_path.iterdir()) == [photos]  # no empty output, no parts folder
    empty = tmp_path / "empty"
    empty.mkdir()
    result = ramtag("run", empty, *ramplus_tiny.cli_args())
    assert result.exit_code == 1 and "it holds no files" in result.stderr
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / "d.jpg")
    result = ramtag("run", photos, "--include", "*.png", "--out", out, *ramplus_tiny.cli_args())
    assert result.exit_code == 1 and "1 image left out by --include/--exclude" in result.stderr
    assert not out.exists()


def test_an_image_named_after_a_raw_does_not_take_its_sidecar(tmp_path: Path, ramplus_tiny) -> None:
    from ramtag.outputs.sidecars import Provenance, SidecarWriter

    plain_dng(tmp_path / "IMG_1.CR2", striped(800, 600))
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", tmp_path / "IMG_1.CR2.jpg")  # an export named after it
    (tmp_path / "IMG_1.CR2.xmp").write_text("<x/>")  # the raw's sidecar, darktable-style
    writer = SidecarWriter(Provenance("ram_plus", "", "0.68", "s"), naming="auto")
    assert writer.path_for(tmp_path / "IMG_1.CR2") == tmp_path / "IMG_1.CR2.xmp"
    assert writer.path_for(tmp_path / "IMG_1.CR2.jpg") == tmp_path / "IMG_1.CR2.jpg.xmp"


def test_a_sidecar_left_by_the_other_naming_is_kept_up_to_date(tmp_path: Path, ramplus_tiny) -> None:
    # Tagged for Lightroom (IMG_1.xmp), then for darktable (IMG_1.CR2.xmp) with other settings: the
    # first sidecar must not keep the old tags, and the JPEG of the pair never touches the raw's.
    from ramtag.outputs.sidecars import Provenance, SidecarWriter
    from ramtag.tagger import TagResult

    plain_dng(tmp_path / "IMG_1.CR2", striped(800, 600))
    for name in ("IMG_1.JPG", "alone.jpg", "person.jpg"):
        shutil.copyfile(ramplus_tiny.images / "demo4.jpg", tmp_path / name)
    (tmp_path / "person.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'/>")  # someone else's, not ramtag's
    old, new = TagResult(["old"], [0.9], None, None), TagResult(["new"], [0.9], None, None)
    lightroom = SidecarWriter(Provenance("ram_plus", "", "0.68", "s1"), naming="replace")
    for name in ("IMG_1.CR2", "IMG_1.JPG", "alone.jpg"):
        lightroom.update(tmp_path / name, old)
    assert {p.name for p in tmp_path.glob("*.xmp")} == {"IMG_1.xmp", "IMG_1.JPG.xmp", "alone.xmp", "person.xmp"}
    darktable = SidecarWriter(Provenance("ram_plus", "", "0.5", "s2"), naming="ext")
    for name in ("IMG_1.CR2", "IMG_1.JPG", "alone.jpg", "person.jpg"):
        darktable.update(tmp_path / name, TagResult(["jpeg"], [0.9], None, None) if name == "IMG_1.JPG" else new)
    for name in ("IMG_1.CR2.xmp", "IMG_1.xmp", "alone.jpg.xmp", "alone.xmp"):
        text = (tmp_path / name).read_text()
        assert "ramtag|new" in text and "ramtag|old" not in text and "jpeg" not in text, name
    assert "ramtag|jpeg" in (tmp_path / "IMG_1.JPG.xmp").read_text()
    assert (tmp_path / "person.xmp").read_text() == "<x:xmpmeta xmlns:x='adobe:ns:meta/'/>"
    assert (darktable.written, darktable.others_written) == (4, 2)  # this run's, and the two kept up to date
    assert all(darktable.is_current(tmp_path / name) for name in ("IMG_1.CR2", "IMG_1.JPG", "alone.jpg"))
    assert SidecarWriter(Provenance("ram_plus", "", "0.5", "s2"), naming="replace").is_current(tmp_path / "alone.jpg")


def test_sidecars_that_disagree_are_not_current(tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    # Left by a version before sidecars of the other naming were kept up to date: IMG.xmp from
    # other settings than IMG.jpg.xmp. A run with the newer settings must bring IMG.xmp along.
    from ramtag.outputs.sidecars import Provenance, SidecarWriter
    from ramtag.tagger import TagResult

    image = tmp_path / "a.jpg"
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", image)
    old, new = Provenance("ram_plus", "", "0.68", "s1"), Provenance("ram_plus", "", "0.5", "s2")
    with monkeypatch.context() as patch:
        patch.setattr(SidecarWriter, "other_for", lambda self, image, path: None)
        SidecarWriter(old, naming="replace").update(image, TagResult(["old"], [0.9], None, None))
        SidecarWriter(new, naming="ext").update(image, TagResult(["new"], [0.9], None, None))
    writer = SidecarWriter(new, naming="ext")
    assert not writer.is_current(image)
    writer.update(image, TagResult(["new"], [0.9], None, None))
    assert "ramtag|new" in (tmp_path / "a.xmp").read_text() and writer.is_current(image)


def test_the_shared_name_warning_is_one_line_even_when_the_progress_count_asks_meanwhile(tmp_path: Path, ramplus_tiny) -> None:
    import threading

    from ramtag.outputs.sidecars import Provenance, SidecarWriter

    for name in ("IMG_5.jpg", "IMG_5.png", "IMG_5.tif"):  # exports of one picture, no raw among them
        Image.open(ramplus_tiny.images / "demo4.jpg").convert("RGB").save(tmp_path / name)
    said: list[str] = []

    def warn(image: Path, text: str) -> None:
        said.append(f"{image.name}: {text}")
        if len(said) == 1:  # the counting thread reaches the same question while this line is printed
            other = threading.Thread(target=writer.path_for, args=(tmp_path / "IMG_5.tif",))
            other.start()
            other.join()

    writer = SidecarWriter(Provenance("ram_plus", "", "0.68", "s"), naming="replace", warn=warn)
    assert writer.path_for(tmp_path / "IMG_5.png") == tmp_path / "IMG_5.png.xmp"
    assert writer.path_for(tmp_path / "IMG_5.tif") == tmp_path / "IMG_5.tif.xmp"
    assert writer.path_for(tmp_path / "IMG_5.jpg") == tmp_path / "IMG_5.xmp"
    assert said == ["IMG_5.png: shares its name with IMG_5.jpg, which owns IMG_5.xmp (the first of them by name): "
                    "its sidecar is IMG_5.png.xmp, and so for every image sharing a name"]
