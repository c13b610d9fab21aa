"""Discovery (order, keys, lists, filters, hidden files, symlinks) and decoding, good and bad."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, features

from ramtag import inputs
from ramtag.inputs import decode as decoding
from ramtag.inputs import folders
from ramtag.errors import RamtagError, UsageError
from ramtag.inputs import (
    IMAGE_EXTENSIONS,
    MAX_PIXELS,
    ImageDecodeError,
    ImageRef,
    decode_image,
    discover,
)
from ramtag.inputs.discover import discover_items
from ramtag.inputs.findings import Findings, NothingFoundError, some_images


@pytest.fixture(autouse=True)
def restore_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """decode_image may raise Pillow's process-wide limit; keep that out of other tests."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)


def _save(
    path: Path, size: tuple[int, int] = (24, 16), color: str = "red", **kwargs: object
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = kwargs.pop("format", None)
    Image.new("RGB", size, color).save(path, format=fmt, **kwargs)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with everything a real photo collection throws at a walker, created out of order."""
    root = tmp_path / "tree"
    _save(root / "sub" / "deeper" / "d.webp", format="WEBP")
    _save(root / "a.jpg")
    _save(root / "sub" / "c.PNG", format="PNG")
    _save(root / "B.JPG", format="JPEG")
    (root / "notes.txt").write_text("not an image")
    _save(root / ".hidden.jpg")
    _save(root / ".secret" / "x.png")
    _save(tmp_path / "elsewhere" / "e.jpg")
    (root / "ext").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (root / "sub" / "loop").symlink_to("..", target_is_directory=True)  # back to tree: a loop
    (root / "link.jpg").symlink_to(tmp_path / "elsewhere" / "e.jpg")  # outside: followed
    (root / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    return root


EXPECTED = ["B.JPG", "a.jpg", "link.jpg", "ext/e.jpg", "sub/c.PNG", "sub/deeper/d.webp"]


def _keys(refs: object) -> list[str]:
    return [ref.key for ref in refs]  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Discovery


def test_extensions_cover_the_common_formats() -> None:
    assert {".jpg", ".jpe", ".jfif", ".dib", ".tiff", ".heic", ".heif", ".avif"} <= IMAGE_EXTENSIONS
    assert inputs.is_image_name("IMG_0001.JPEG") and not inputs.is_image_name("notes.txt")


def test_walk_order_keys_and_paths(tree: Path) -> None:
    errors: list[tuple[Path, str]] = []
    refs = list(discover([tree], on_error=lambda path, why: errors.append((path, why))))
    assert _keys(refs) == EXPECTED  # files first (by code point), then folders; loop walked once
    assert _keys(discover([str(tree)])) == EXPECTED  # deterministic, str or Path
    assert all(isinstance(ref, ImageRef) and ref.path.is_file() for ref in refs)
    assert refs[3].path == tree / "ext" / "e.jpg"  # opened through the link, as the user sees it
    assert refs[5].path == tree / "sub" / "deeper" / "d.webp"
    assert errors == [(tree / "broken.jpg", "broken symbolic link skipped")]


def test_a_link_to_a_folder_the_walk_reaches_anyway_is_not_followed(tmp_path: Path) -> None:
    """A shortcut folder sorted before the real one took over its photos' keys; deleting it had
    them tagged again under new keys, the old rows left behind. A link to a file is a name of its
    own (an album of links), as before."""
    root = tmp_path / "library"
    _save(root / "photos" / "a.jpg")
    _save(root / ".store" / "s.jpg")
    (root / "a_best").symlink_to("photos", target_is_directory=True)
    (root / "alias.jpg").symlink_to(root / "photos" / "a.jpg")
    (root / "kept").symlink_to(".store", target_is_directory=True)  # its target is left out as hidden
    assert _keys(discover([root])) == ["alias.jpg", "kept/s.jpg", "photos/a.jpg"]
    assert _keys(discover([root], hidden=True)) == ["alias.jpg", ".store/s.jpg", "photos/a.jpg"]
    assert _keys(discover([root / "a_best"])) == ["a.jpg"]  # a link given as the input is the root


def test_an_edit_copy_left_by_a_killed_embed_is_never_a_photo(tmp_path: Path) -> None:
    """`--hidden` runs tagged `.a.ramtag-tmp.jpg` (and wrote it a sidecar)."""
    _save(tmp_path / "a.jpg")
    _save(tmp_path / ".a.ramtag-tmp.jpg")
    _save(tmp_path / ".b.jpg")
    assert _keys(discover([tmp_path], hidden=True)) == [".b.jpg", "a.jpg"]


def test_a_symbolic_link_loop_is_said_as_one(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    errors: list[tuple[Path, str]] = []
    assert list(discover([tmp_path], on_error=lambda path, why: errors.append((path, why)))) == []
    assert [why for _, why in errors] == ["symbolic link loop skipped (links that lead back to each other)"] * 2


def test_hidden_files_and_folders_on_request(tree: Path) -> None:
    keys = _keys(discover([tree], hidden=True))
    assert keys == [".hidden.jpg", *EXPECTED[:3], ".secret/x.png", *EXPECTED[3:]]


def test_a_folder_of_hidden_images_says_so(tmp_path: Path) -> None:
    _save(tmp_path / "onlyhid" / ".a.jpg")
    _save(tmp_path / "onlyhid" / ".thumbs" / "b.jpg")
    (tmp_path / "onlyhid" / ".DS_Store").write_bytes(b"\0")  # hidden, but no image: nothing to say
    findings = Findings()
    with pytest.raises(NothingFoundError) as caught:
        some_images(discover([tmp_path / "onlyhid"], findings=findings), findings, [tmp_path / "onlyhid"])
    assert "1 hidden image and 1 hidden folder left out (--hidden includes them)" in str(caught.value)
    assert "holds no files" not in str(caught.value)
    _save(tmp_path / "onlyhid" / ".c.png")
    (tmp_path / "onlyhid" / "notes.txt").write_text("x")
    findings = Findings()
    assert list(discover([tmp_path / "onlyhid"], findings=findings)) == []
    assert findings.why() == ("1 file skipped (.txt), not an image or camera raw extension; "
                              "2 hidden images and 1 hidden folder left out (--hidden includes them)")


def test_hidden_folders_of_tools_are_not_worth_a_hint(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git" / "objects").mkdir(parents=True)
    (tmp_path / "repo" / ".Trashes").mkdir()
    (tmp_path / "repo" / "README.md").write_text("x")
    findings = Findings()
    assert list(discover([tmp_path / "repo"], findings=findings)) == []
    assert findings.why() == "1 file skipped (.md), not an image or camera raw extension"
    (tmp_path / "repo" / ".exports").mkdir()  # any other hidden folder may hold photos
    findings = Findings()
    assert list(discover([tmp_path / "repo"], findings=findings)) == []
    assert "1 hidden folder left out (--hidden includes them)" in findings.why()


def test_nas_thumbnails_and_recycle_bins_are_left_out(tmp_path: Path) -> None:
    """A Synology share holds five small JPEGs per photo in @eaDir, and deleted photos in #recycle."""
    _save(tmp_path / "share" / "photo.jpg")
    _save(tmp_path / "share" / "@eaDir" / "photo.jpg" / "SYNOPHOTO_THUMB_M.jpg")
    _save(tmp_path / "share" / "#recycle" / "old.jpg")
    _save(tmp_path / "share" / "$Recycle.Bin" / "S-1-5-21" / "$R1.jpg")  # a Windows system drive's spelling
    _save(tmp_path / "share" / "@eaDir.jpg")  # a file so named is a photo
    assert _keys(discover([tmp_path / "share"])) == ["@eaDir.jpg", "photo.jpg"]
    assert len(_keys(discover([tmp_path / "share"], hidden=True))) == 5


def test_files_given_directly_keep_their_spelling(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree)
    refs = list(discover(["notes.txt", "./sub/c.PNG", tree / "a.jpg", ".hidden.jpg", "ext"]))
    assert _keys(refs) == ["notes.txt", "./sub/c.PNG", str(tree / "a.jpg"), ".hidden.jpg", "ext/e.jpg"]
    assert refs[1].path == Path("./sub/c.PNG")


def test_a_loop_is_walked_once(tree: Path) -> None:
    # From sub, "loop" leads to the parent, which is new to this walk; sub itself is not re-entered.
    keys = _keys(discover([tree / "sub"]))
    assert keys == [
        "c.PNG", "deeper/d.webp", "loop/B.JPG", "loop/a.jpg", "loop/link.jpg", "loop/ext/e.jpg"
    ]


def test_missing_input_is_a_usage_error_before_iterating(tree: Path) -> None:
    with pytest.raises(UsageError) as caught:
        discover([tree, tree / "nope"])  # no next(): checked at the call
    assert str(caught.value) == f"input not found: {tree / 'nope'}"
    with pytest.raises(UsageError, match="files-from"):
        discover([], files_from=tree / "missing.txt")


def test_files_from_stdin_and_file(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    listing = "# my picks\n\na.jpg\r\n  sub/deeper  \nnotes.txt\n# gone.jpg\ngone.jpg\n"
    refs = list(discover([], files_from="-", stdin=io.StringIO(listing)))
    assert _keys(refs) == ["a.jpg", "sub/deeper/d.webp", "notes.txt", "gone.jpg"]  # a listed folder: walked, keyed under its spelling
    assert refs[0].path == Path("a.jpg")  # relative to the current folder
    list_file = tree.parent / "list.txt"
    list_file.write_text(listing, encoding="utf-8")
    both = _keys(discover(["B.JPG"], files_from=list_file))
    assert both == ["B.JPG", "a.jpg", "sub/deeper/d.webp", "notes.txt", "gone.jpg"]  # inputs, then the list


def test_a_listed_name_with_spaces_at_its_ends_is_that_file(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`ls -1 > list` names " lead.jpg" as it is: stripped, it was a missing file."""
    monkeypatch.chdir(tree)
    _save(tree / " lead.jpg")
    _save(tree / "trail.jpg ", format="JPEG")
    listing = " lead.jpg\ntrail.jpg \r\n  a.jpg  \n"
    assert _keys(discover([], files_from="-", stdin=io.StringIO(listing))) == [" lead.jpg", "trail.jpg ", "a.jpg"]


def test_files_from_nul_separated(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # find -print0: names as they are, a newline, leading spaces or a '#' included.
    monkeypatch.chdir(tree)
    _save(tree / "new\nline" / " x.jpg")
    _save(tree / "#1.jpg")
    listing = "a.jpg\0new\nline/ x.jpg\0#1.jpg\0sub/deeper\0"
    expected = ["a.jpg", "new\nline/ x.jpg", "#1.jpg", "sub/deeper/d.webp"]
    assert _keys(discover([], files_from="-", stdin=io.StringIO(listing))) == expected
    list_file = tree.parent / "list0"
    list_file.write_bytes(listing.encode() + "caf\xe9.jpg\0a\rb.jpg\0".encode("latin-1"))
    refs = list(discover([], files_from=list_file))
    assert _keys(refs)[:4] == expected
    assert [os.fsencode(ref.path) for ref in refs[4:]] == [b"caf\xe9.jpg", b"a\rb.jpg"]  # bytes kept


def test_a_carriage_return_inside_a_listed_name_is_part_of_it(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Splitting at it made `sub/\r x.jpg` the folder `sub/` (walked whole) and the name ` x.jpg`.
    monkeypatch.chdir(tree)
    _save(tree / "sub" / "\r x.jpg")
    assert _keys(discover([], files_from="-", stdin=io.StringIO("sub/\r x.jpg\r\na.jpg\n"))) == ["sub/\r x.jpg", "a.jpg"]
    # A list with no \n at all ends its lines with \r (classic Mac OS, some spreadsheet exports).
    assert _keys(discover([], files_from="-", stdin=io.StringIO("a.jpg\rB.JPG\r"))) == ["a.jpg", "B.JPG"]
    assert _keys(discover([], files_from="-", stdin=io.StringIO("a.jpg\rB.JPG\rsub/c.PNG"))) == ["a.jpg", "B.JPG", "sub/c.PNG"]
    # One name with a \r inside and no line end at all is that name, not a folder and a name.
    assert _keys(discover([], files_from="-", stdin=io.StringIO("sub/\r x.jpg"))) == ["sub/\r x.jpg"]


def test_a_nul_separated_list_may_name_files_with_escape_sequences(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tree)
    _save(tree / "\x1b[31mred.jpg")
    listing = "\x1b[31mred.jpg\0a.jpg\0B.JPG\0"
    assert _keys(discover([], files_from="-", stdin=io.StringIO(listing))) == ["\x1b[31mred.jpg", "a.jpg", "B.JPG"]


def test_files_from_that_is_no_list_of_paths_is_refused_before_any_work(
    tree: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PowerShell's `>` writes UTF-16; a checkpoint or a photo given by mistake holds NULs too. Read
    # as NUL-separated names they would give "/" and "." and walk whole folders.
    utf16 = tree.parent / "list16.txt"
    utf16.write_text("a.jpg\r\nsub/b.png\r\n", encoding="utf-16")
    no_bom = tree.parent / "list16le.txt"
    no_bom.write_bytes("a.jpg\nsub/b.png\n".encode("utf-16-le"))
    for listed in (utf16, no_bom):
        with pytest.raises(UsageError, match=f"{listed}: this looks like UTF-16 text or a binary file"):
            discover_items([], files_from=listed)  # refused at the call, before anything is read
    for binary in (ramplus_tiny.checkpoint, ramplus_tiny.images / "demo4.jpg"):
        with pytest.raises(UsageError, match="not a list of paths"):
            discover_items([], files_from=binary)
    bom = tree.parent / "bom.txt"
    bom.write_text("a.jpg\nsub/c.PNG\n", encoding="utf-8-sig")  # Notepad's UTF-8
    monkeypatch.chdir(tree)
    assert _keys(discover([], files_from=bom)) == ["a.jpg", "sub/c.PNG"]


def test_only_regular_files_are_read_ahead(tmp_path: Path) -> None:
    from ramtag.inputs.lists import _can_read_ahead

    reading, writing = os.pipe()
    with io.open(reading, "rb") as pipe, io.open(writing, "wb"), open(tmp_path / "f", "wb") as file:
        assert not _can_read_ahead(pipe) and _can_read_ahead(file) and _can_read_ahead(io.StringIO("a.jpg\n"))


@pytest.mark.parametrize("separator", ["\n", "\0"])
def test_files_from_is_read_as_it_goes(separator: str) -> None:
    listing = io.StringIO(separator.join(f"photos/{n:07d}.jpg" for n in range(200_000)))  # 4 MB
    refs = discover([], files_from="-", stdin=listing)
    assert next(refs).key == "photos/0000000.jpg"
    assert listing.tell() < 100_000


@pytest.mark.parametrize("separator", ["\n", "\0"])
def test_files_from_a_pipe_is_read_while_its_writer_is_at_work(separator: str) -> None:
    reading, writing = os.pipe()
    stdin = io.TextIOWrapper(io.open(reading, "rb"), encoding="utf-8")
    os.write(writing, f"a.jpg{separator}new\nline.jpg{separator}".encode())
    got: list[str] = []
    refs = discover([], files_from="-", stdin=stdin)
    reader = threading.Thread(target=lambda: got.extend(ref.key for ref in refs), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 10
        while len(got) < (3 if separator == "\n" else 2) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert got == (["a.jpg", "new", "line.jpg"] if separator == "\n" else ["a.jpg", "new\nline.jpg"])
    finally:
        os.close(writing)
        reader.join(10)
    stdin.close()


def test_several_folders_keep_the_same_names_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for folder in ("2023/raw", "2024/raw"):
        (tmp_path / folder / "sub").mkdir(parents=True)
        for name in ("x.jpg", "sub/y.jpg"):
            Image.new("RGB", (4, 4)).save(tmp_path / folder / name)
    assert _keys(discover(["2023/raw"])) == ["x.jpg", "sub/y.jpg"]  # one folder: relative to it
    both = ["2023/raw/x.jpg", "2023/raw/sub/y.jpg", "2024/raw/x.jpg", "2024/raw/sub/y.jpg"]
    assert _keys(discover(["./2023/raw/", "2024/raw"])) == both  # as written, tidied
    assert _keys(discover(["{2023,2024}/raw"])) == both  # one pattern, two folders
    assert _keys(discover([tmp_path / "2023/raw", "2024/raw/x.jpg"]))[:2] == [
        f"{(tmp_path / '2023/raw').as_posix()}/x.jpg", f"{(tmp_path / '2023/raw').as_posix()}/sub/y.jpg"
    ]
    monkeypatch.chdir(tmp_path / "2023/raw")
    assert _keys(discover([".", "../../2024/raw/x.jpg"])) == ["x.jpg", "sub/y.jpg", "../../2024/raw/x.jpg"]
    warnings: list[tuple[Path, str]] = []
    twice = discover([".", "x.jpg", "sub/y.jpg"], on_error=lambda path, why: warnings.append((path, why)))
    assert _keys(twice) == ["x.jpg", "sub/y.jpg"]  # the same files again: tagged once, said so
    assert warnings == [(Path("x.jpg"), "given twice among the inputs: tagged once"),
                        (Path("sub/y.jpg"), "given twice among the inputs: tagged once")]
    for number in range(10):
        Image.new("RGB", (4, 4)).save(f"sub/{number}.jpg")
    warnings.clear()  # a folder given with its subfolder: a few said, not every file
    assert len(_keys(discover([".", "sub"], on_error=lambda path, why: warnings.append((path, why))))) == 12
    assert [why for _, why in warnings] == ["given twice among the inputs: tagged once"] * 2 + [
        "given twice among the inputs: tagged once (any more files given twice are not listed)"]
    warnings.clear()  # one file named two ways: one row, not one per spelling
    spellings = ["x.jpg", str(tmp_path / "2023/raw/x.jpg"), "sub/../x.jpg"]
    assert _keys(discover(spellings, on_error=lambda path, why: warnings.append((path, why)))) == ["x.jpg"]
    assert [path for path, _ in warnings] == [tmp_path / "2023/raw/x.jpg", Path("sub/../x.jpg")]


def test_include_and_exclude(tree: Path) -> None:
    assert _keys(discover([tree], include=["*.webp"])) == ["sub/deeper/d.webp"]
    assert _keys(discover([tree], include=["sub/*"])) == ["sub/c.PNG", "sub/deeper/d.webp"]
    one_letter = ["B.JPG", "a.jpg", "ext/e.jpg", "sub/c.PNG", "sub/deeper/d.webp"]
    assert _keys(discover([tree], include=["?.*"])) == one_letter  # matches the name alone too
    kept = ["a.jpg", "link.jpg", "ext/e.jpg", "sub/c.PNG"]
    assert _keys(discover([tree], exclude=["sub/deeper/*", "B.*"])) == kept
    assert _keys(discover([tree], include=["*.jpg"], exclude=["ext/*"])) == ["a.jpg", "link.jpg"]
    # A folder, as a user names it: by its path, its name at any depth, or either with a slash.
    for folder in ("sub/deeper", "deeper", "deeper/", "sub/deeper/"):
        assert _keys(discover([tree], exclude=[folder])) == ["B.JPG", *kept], folder
    assert _keys(discover([tree], include=["sub"])) == ["sub/c.PNG", "sub/deeper/d.webp"]
    assert _keys(discover([tree], exclude=["a.jpg/"])) == _keys(discover([tree]))  # a slash: folders only
    findings = Findings()
    assert len(_keys(discover([tree], include=["*.jpg", "*.tif"], exclude=["d1"], findings=findings))) == 3
    assert findings.unmatched == {"--include *.tif", "--exclude d1"}  # said at the end of a run
    findings = Findings()  # every glob that matches something counts, not only the first to match
    _keys(discover([tree], include=["*.jpg", "a.*", "*.webp"], exclude=["sub", "sub/*", "B.*"], findings=findings))
    assert findings.unmatched == set()


def test_unreadable_folder_is_reported_and_skipped(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tree / "sub"
    real_scandir = os.scandir

    def scandir(path: str) -> object:
        if Path(path) == blocked:
            raise PermissionError(13, "Permission denied", path)
        return real_scandir(path)

    errors: list[tuple[Path, str]] = []
    with monkeypatch.context() as patch:  # root ignores chmod 000, so simulate it
        patch.setattr(os, "scandir", scandir)
        keys = _keys(discover([tree], on_error=lambda path, why: errors.append((path, why))))
    assert keys == EXPECTED[:4]
    assert (blocked, "permission denied: folder skipped") in errors


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="chmod does not stop root")
def test_unreadable_folder_for_real(tree: Path) -> None:
    blocked = tree / "sub"
    blocked.chmod(0)
    try:
        errors: list[tuple[Path, str]] = []
        keys = _keys(discover([tree], on_error=lambda path, why: errors.append((path, why))))
    finally:
        blocked.chmod(0o755)
    assert keys == EXPECTED[:4] and (blocked, "permission denied: folder skipped") in errors


def test_discovery_streams(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed: list[str] = []
    real = folders._sorted_listing

    def counting(folder: str, on_error: object) -> list[os.DirEntry[str]]:
        listed.append(folder)
        return real(folder, on_error)  # type: ignore[arg-type]

    monkeypatch.setattr(folders, "_sorted_listing", counting)
    refs = discover([tree])
    assert listed == []
    assert next(refs).key == "B.JPG"
    assert len(listed) == 1  # only the top folder has been read so far


def test_official_fixture_images(ramplus_tiny: object) -> None:
    refs = list(discover([ramplus_tiny.images]))  # type: ignore[attr-defined]
    keys = _keys(refs)
    assert keys == sorted(keys) and "synth_cmyk.jpg" in keys
    for ref in refs:
        image = decode_image(ref.path)
        assert image.width > 0 and image.height > 0


# ---------------------------------------------------------------------------------------------
# Decoding good files


def test_decodes_a_plain_jpeg(tmp_path: Path) -> None:
    image = decode_image(_save(tmp_path / "a.jpg", (30, 20)))
    assert (image.mode, image.size) == ("RGB", (30, 20))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    picture = Image.new("RGB", (40, 20), "blue")
    picture.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    picture.save(path, exif=exif, quality=95)
    image = decode_image(path)
    assert image.size == (20, 40)
    red, green, blue = image.convert("RGB").getpixel((10, 5))
    assert red > 200 and blue < 60  # the left half is now on top


def test_first_frame_of_an_animation(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), color) for color in ("red", "lime", "blue")]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    image = decode_image(path)
    assert not getattr(image, "is_animated", False)
    assert image.convert("RGB").getpixel((8, 8)) == (255, 0, 0)
    webp = tmp_path / "anim.webp"
    frames[0].save(webp, save_all=True, append_images=frames[1:], duration=50, lossless=True)
    assert decode_image(webp).convert("RGB").getpixel((8, 8)) == (255, 0, 0)


def test_first_page_of_a_multipage_tiff(tmp_path: Path) -> None:
    pages = [Image.new("RGB", (12, 8), "red"), Image.new("RGB", (30, 30), "blue")]
    path = tmp_path / "pages.TIFF"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    image = decode_image(path)
    assert image.size == (12, 8) and image.getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("name", "mode", "fmt"),
    [("deep.png", "I;16", "PNG"), ("print.jpg", "CMYK", "JPEG"), ("still.webp", "RGB", "WEBP"),
     ("gray.bmp", "L", "BMP"), ("alpha.png", "RGBA", "PNG")],
)
def test_other_modes_decode_as_they_are(tmp_path: Path, name: str, mode: str, fmt: str) -> None:
    path = tmp_path / name
    Image.new(mode, (10, 6), 1000 if mode == "I;16" else 200).save(path, format=fmt)
    image = decode_image(path)
    assert image.size == (10, 6) and image.mode.startswith(mode[0])


def test_heic(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("pillow-heif has no HEIF encoder here")
    pillow_heif.register_heif_opener()
    path = tmp_path / "phone.HEIC"
    Image.new("RGB", (64, 48), "red").save(path, format="HEIF")
    image = decode_image(path)
    assert image.size == (64, 48)
    assert image.convert("RGB").getpixel((32, 24))[0] > 200


def test_heic_support_is_loaded_at_the_first_file_pillow_cannot_identify(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("pillow-heif has no HEIF encoder here")
    pillow_heif.register_heif_opener()
    Image.new("RGB", (40, 30), "blue").save(tmp_path / "phone.heic", format="HEIF")
    (tmp_path / "mislabelled.jpg").write_bytes((tmp_path / "phone.heic").read_bytes())
    _save(tmp_path / "plain.png", (8, 8))
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from ramtag.inputs.decode import decode_bytes, decode_image\n"
        f"folder = Path({str(tmp_path)!r})\n"
        "assert decode_image(folder / 'plain.png').size == (8, 8)\n"
        "assert 'pillow_heif' not in sys.modules, 'imported before a HEIC was seen'\n"
        "data = (folder / 'mislabelled.jpg').read_bytes()\n"
        "print(decode_bytes(data, name='mislabelled.jpg').size, decode_image(folder / 'phone.heic').size)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["(40,", "30)", "(40,", "30)"]
    at_once = (  # the first HEICs arrive together in several threads (ramtag serve): none is lost
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from pathlib import Path\n"
        "from ramtag.inputs.decode import decode_image\n"
        f"path = Path({str(tmp_path / 'phone.heic')!r})\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    print(set(pool.map(lambda _: decode_image(path).size, range(16))))\n"
    )
    done = subprocess.run([sys.executable, "-c", at_once], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "{(40, 30)}", done.stderr[-2000:]


@pytest.mark.skipif(not features.check("avif"), reason="Pillow built without AVIF")
def test_avif(tmp_path: Path) -> None:
    path = tmp_path / "modern.avif"
    Image.new("RGB", (32, 16), "red").save(path, format="AVIF")
    assert decode_image(path).size == (32, 16)


def test_raised_limit_gets_past_pillows_own_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow would refuse over 2,000 pixels
    path = _save(tmp_path / "big.png", (64, 64))
    assert decode_image(path, max_pixels=10_000).size == (64, 64)
    assert Image.MAX_IMAGE_PIXELS == 5000  # raised just enough, never lowered
    with pytest.raises(ImageDecodeError):
        decode_image(path, max_pixels=3000)  # our limit still decides
    assert Image.MAX_IMAGE_PIXELS == 5000
    assert decode_image(path, max_pixels=None).size == (64, 64)
    assert Image.MAX_IMAGE_PIXELS is None


# ---------------------------------------------------------------------------------------------
# Decoding bad files: one clear message each, never the path


def _failure(path: Path, **kwargs: object) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(path, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message and str(path) not in message and path.name not in message
    return caught.value


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    error = _failure(path)
    assert error.kind == "empty" and str(error).startswith("empty file (0 bytes)")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    noise = Image.effect_noise((96, 64), 60).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format=fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    error = _failure(path)
    assert error.kind == "truncated"
    assert str(error).startswith("truncated file: the image data ends early")


def test_a_jpeg_missing_only_its_end_marker_is_read_whole(tmp_path: Path) -> None:
    """Old cameras and scanners left it out; every viewer shows such a file, Pillow called it truncated."""
    noise = Image.effect_noise((96, 64), 60).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG")
    data = buffer.getvalue()
    whole = np.asarray(Image.open(buffer))
    path = tmp_path / "old.jpg"
    path.write_bytes(data[:-2])
    np.testing.assert_array_equal(np.asarray(decode_image(path)), whole)
    path.write_bytes(data[:-40])  # image data missing too: still refused, never made up
    assert _failure(path).kind == "truncated"


def test_a_progressive_jpeg_cut_off_between_scans_stays_truncated(tmp_path: Path) -> None:
    """Its first scans decode to a blurry whole image, with or without what the test adds."""
    noise = Image.effect_noise((256, 256), 60).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG", progressive=True)
    data = buffer.getvalue()
    scans = [at for at in range(len(data) - 1) if data[at : at + 2] == b"\xff\xda"]
    assert len(scans) > 3
    path = tmp_path / "cut.jpg"
    for at in (scans[2], scans[-1], len(data) - 2):  # between scans, and before the end marker alone
        path.write_bytes(data[:at])
        assert _failure(path).kind == "truncated"


def test_draft_decoding_of_an_image_read_as_stored_keeps_its_size(tmp_path: Path) -> None:
    from ramtag.inputs import original_size

    path = _save(tmp_path / "big.jpg", (4000, 3000))
    for upright in (True, False):
        image = decode_image(path, draft_size=384, upright=upright)
        assert image.size == (1000, 750) and original_size(image) == (4000, 3000)


def test_text_named_png(tmp_path: Path) -> None:
    path = tmp_path / "fake.png"
    path.write_text("hello, I am not a picture\n")
    error = _failure(path)
    assert error.kind == "not_image" and str(error).startswith("not an image Pillow can read")


def test_a_listed_appledouble_file_is_named_for_what_it_is(tmp_path: Path) -> None:
    """`find . -type f` on a disk a Mac wrote lists a ._ file beside each photo."""
    path = tmp_path / "._photo.jpg"
    path.write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64))
    error = _failure(path)
    assert error.kind == "not_image" and "macOS AppleDouble file, the Finder's metadata for photo.jpg" in str(error)


def test_corrupt_data(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, format="WEBP")
    path = tmp_path / "cut.webp"
    path.write_bytes(buffer.getvalue()[:40])
    error = _failure(path)
    assert error.kind in {"corrupt", "truncated"} and "image data" in str(error)


def test_decompression_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (14_000, 14_000)).save(path, optimize=True)  # ~24 kB on disk, 196 Mpx
    assert path.stat().st_size < 100_000
    error = _failure(path)
    assert error.kind == "too_large"
    assert "196,000,000 pixels is over the limit of 178,956,970" in str(error)
    assert "--max-pixels" in str(error)
    assert MAX_PIXELS == 178_956_970


def test_pillows_bomb_warning_never_reaches_the_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow warns of images over half its limit, which ramtag then tags: a line about a DOS attack."""
    import warnings

    from ramtag.inputs import decode_image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        image = decode_image(_save(tmp_path / "a.png", (12, 12)), max_pixels=150)  # over 100, within 2 x 100
    assert image.size == (12, 12) and [w.message for w in said] == []


def test_over_a_small_limit(tmp_path: Path) -> None:
    error = _failure(_save(tmp_path / "a.jpg", (64, 64)), max_pixels=1000)
    assert str(error).startswith("image too large: 4,096 pixels is over the limit of 1,000")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    assert _failure(folder).kind == "folder"


def test_deleted_after_discovery(tree: Path) -> None:
    ref = next(discover([tree]))
    ref.path.unlink()
    error = _failure(ref.path)
    assert error.kind == "missing" and str(error).startswith("file not found")


def test_deleted_between_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "a.jpg")

    def vanished(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError(2, "No such file or directory", str(path))

    monkeypatch.setattr(Image, "open", vanished)
    assert _failure(path).kind == "missing"


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(tmp_path / "locked.jpg")
    if os.name == "posix" and os.geteuid() != 0:
        path.chmod(0)
    else:  # root reads anything: simulate what chmod 000 does for everyone else

        def denied(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied", str(path))

        monkeypatch.setattr(Image, "open", denied)
    error = _failure(path)
    assert error.kind == "permission" and str(error).startswith("permission denied")


def test_heic_without_pillow_heif(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decoding, "heif_ready", lambda: False)
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypmif1" + b"\x00" * 32)
    assert "pip install pillow-heif" in str(_failure(path))


def test_error_is_a_ramtag_error_and_pickles() -> None:
    error = ImageDecodeError("empty file (0 bytes)", "empty")
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, RamtagError)
    assert (str(copy), copy.kind) == ("empty file (0 bytes)", "empty")


def _photo(path: Path, size: tuple[int, int], **save: object) -> Path:
    """A JPEG with detail at every scale, so a reduced-scale decode differs from a full one."""
    rng = np.random.default_rng(0)
    coarse = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).resize(size)
    noise = rng.integers(-30, 30, (size[1], size[0], 3))
    pixels = np.clip(np.asarray(coarse, dtype=np.int64) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90, **save)
    return path


def test_draft_decoding_shrinks_large_jpegs_but_not_below_the_input(tmp_path: Path) -> None:
    path = _photo(tmp_path / "big.jpg", (1600, 1200))
    exact = decode_image(path)
    draft = decode_image(path, draft_size=384)
    assert exact.size == inputs.original_size(exact) == (1600, 1200)
    assert draft.size == (800, 600)  # 1/4 would make the short side 300 < 384
    assert inputs.original_size(draft) == (1600, 1200)  # outputs report the file's own size
    assert decode_image(path, draft_size=100).size == (200, 150)  # 1/8, the largest DCT step
    assert decode_image(path, draft_size=1000).size == (1600, 1200)  # no smaller scale fits


def test_draft_decoding_keeps_the_upright_original_size(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = _photo(tmp_path / "rotated.jpg", (1600, 1200), exif=exif)
    draft = decode_image(path, draft_size=384)
    assert draft.size == (600, 800)
    assert inputs.original_size(draft) == (1200, 1600)


def test_draft_decoding_leaves_other_formats_alone(tmp_path: Path) -> None:
    path = _save(tmp_path / "big.png", (1600, 1200))
    image = decode_image(path, draft_size=384)
    assert image.size == inputs.original_size(image) == (1600, 1200)


@pytest.mark.parametrize("first", ["ramtag.engine.units", "ramtag.inputs.discover", "ramtag.inputs.decode"])
def test_the_package_names_are_its_modules_functions_whatever_was_imported_first(first: str) -> None:
    code = (
        "import importlib, sys\n"
        f"importlib.import_module({first!r})\n"
        "import ramtag.inputs as package\n"
        "for name in package.__all__:\n"
        "    value = getattr(package, name)\n"
        "    assert not isinstance(value, type(sys)), name\n"  # a function or class, never a submodule
        "    home = getattr(value, '__module__', None) or ''\n"  # constants and type aliases: not ramtag's
        "    assert not home.startswith('ramtag.') or value is getattr(importlib.import_module(home), name), name\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_a_list_from_a_pipe_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--files-from <(find ...)` hands over /dev/fd/63, a pipe: it was refused as "not a file"."""
    import os
    import threading

    monkeypatch.chdir(tmp_path)
    _save(tmp_path / "a.jpg")
    _save(tmp_path / "b.jpg")
    pipe = tmp_path / "list"
    os.mkfifo(pipe)

    def write() -> None:
        with open(pipe, "w") as handle:
            handle.write("a.jpg\nb.jpg\n")

    writer = threading.Thread(target=write)
    writer.start()
    assert _keys(discover([], files_from=pipe)) == ["a.jpg", "b.jpg"]
    writer.join()
