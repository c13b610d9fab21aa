"""XMP sidecars without the model: merging into what photo software wrote, cleaning, refusing.

The sidecars below are written in the styles of Lightroom Classic and darktable; what they must keep
is checked byte for byte and, where exiftool is installed, as exiftool reads it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ramtag.outputs.sidecars import (
    Provenance,
    SidecarWriter,
    clean,
    find_sidecars,
    sidecar_path,
    write_atomically,
)
from ramtag.outputs.xmp import RAMTAG, SidecarError, merge
from ramtag.pipeline import ImageRecord
from ramtag.tagger import TagResult

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool is not installed (Debian: libimage-exiftool-perl; .ci/run installs it)"
)
KEYWORD_TAGS = ["-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject", "-XMP-digiKam:TagsList"]

LIGHTROOM = """\
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0-c000 1.000000, 0000/00/00-00:00:00        ">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
   xmp:Rating="4"
   xmp:Label="Red"
   crs:Version="15.4"
   crs:ProcessVersion="11.0"
   crs:WhiteBalance="As Shot"
   crs:Exposure2012="+0.35"
   crs:Shadows2012="+21"
   crs:LookName="Adobe Color &amp; &quot;Vivid&quot;">
   <crs:ToneCurvePV2012>
    <rdf:Seq>
     <rdf:li>0, 0</rdf:li>
     <rdf:li>128, 140</rdf:li>
     <rdf:li>255, 255</rdf:li>
    </rdf:Seq>
   </crs:ToneCurvePV2012>
   <dc:title>
    <rdf:Alt>
     <rdf:li xml:lang="x-default">Sunday walk</rdf:li>
    </rdf:Alt>
   </dc:title>
   <dc:subject>
    <rdf:Bag>
     <rdf:li>Grandma's garden</rdf:li>
     <rdf:li>dog</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>Places|Grandma's garden</rdf:li>
     <rdf:li>Animals|dog</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

DARKTABLE = """\
<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="2"
   xmpMM:DerivedFrom="IMG_0002.CR2"
   darktable:xmp_version="5"
   darktable:raw_params="0"
   darktable:auto_presets_applied="1"
   darktable:history_end="2"
   darktable:iop_order_version="4">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
    </rdf:Bag>
   </dc:subject>
   <lr:hierarchicalSubject>
    <rdf:Bag>
     <rdf:li>darktable|format|cr2</rdf:li>
     <rdf:li>holiday</rdf:li>
    </rdf:Bag>
   </lr:hierarchicalSubject>
   <darktable:masks_history>
    <rdf:Seq/>
   </darktable:masks_history>
   <darktable:history>
    <rdf:Seq>
     <rdf:li
      darktable:num="0"
      darktable:operation="exposure"
      darktable:enabled="1"
      darktable:modversion="6"
      darktable:params="0000000000000000cdcc4c3e"
      darktable:multi_name=""
      darktable:multi_priority="0"/>
     <rdf:li
      darktable:num="1"
      darktable:operation="colorbalancergb"
      darktable:enabled="1"
      darktable:modversion="5"
      darktable:params="gz09eJxjYGBgYAFiCQYYcHIiYWGQ=="
      darktable:multi_name="&lt;warm&gt; &amp; soft"
      darktable:multi_priority="0"/>
    </rdf:Seq>
   </darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""

PROVENANCE = Provenance("ram_plus", "ab" * 32, "per tag, sha256 0123456789abcdef", "settings-1")


def result(tags: list[str], scores: list[float] | None = None, zh: list[str] | None = None) -> TagResult:
    scores = scores if scores is not None else [0.9 - 0.1 * i for i in range(len(tags))]
    return TagResult(tags, scores, zh, np.zeros(4, dtype=np.float32))


def clock(value: str = "2024-05-01T10:00:00Z"):
    return lambda: value


def exiftool_keywords(path: Path, *extra: str) -> dict[str, list[str]]:
    out = subprocess.run(
        [EXIFTOOL, "-j", "-charset", "utf8", *KEYWORD_TAGS, *extra, str(path)],
        check=True, capture_output=True,
    ).stdout
    found = json.loads(out)[0]
    found.pop("SourceFile")
    return {key: value if isinstance(value, list) else [value] for key, value in found.items()}


def exiftool_everything_but_keywords(path: Path) -> dict:
    """Every XMP tag exiftool reads (each of a list, each group), less the keyword fields and ramtag's."""
    out = subprocess.run([EXIFTOOL, "-j", "-a", "-G1", "-XMP:all", str(path)], check=True, capture_output=True).stdout
    keywords = {tag[1:] for tag in KEYWORD_TAGS}
    return {
        key: value for key, value in json.loads(out)[0].items()
        if key != "SourceFile" and key not in keywords and not key.startswith("XMP-ramtag:")
    }


def element(text: str, name: str) -> str:
    """One element's text exactly as written in ``text``."""
    start = text.index(f"<{name}")
    return text[start : text.index(f"</{name}>", start) + len(name) + 3]


# -- merging ---------------------------------------------------------------------------------------


def test_lightroom_sidecar_keeps_everything_and_clean_gives_back_its_bytes() -> None:
    original = LIGHTROOM.encode()
    merged = merge(original, PROVENANCE, result(["cat", "dog", "sky"]), now=clock())
    text = merged.decode()
    start_tag = LIGHTROOM[LIGHTROOM.index("<rdf:Description") : LIGHTROOM.index(">", LIGHTROOM.index("crs:LookName")) + 1]
    assert start_tag in text  # develop settings, rating, label: the same bytes
    for name in ("crs:ToneCurvePV2012", "dc:title"):
        assert element(LIGHTROOM, name) in text
    subject = element(text, "dc:subject")
    assert subject.count("<rdf:li>dog</rdf:li>") == 1  # the person's dog, not a second one
    assert "<rdf:li>Grandma's garden</rdf:li>" in subject and "<rdf:li>cat</rdf:li>" in subject
    assert "ramtag|dog" not in element(text, "lr:hierarchicalSubject")  # they have `dog`: in no field again
    assert merge(merged, None) == original


def test_darktables_own_tags_are_not_copied_as_the_persons_keywords() -> None:
    """darktable|format|cr2 is darktable's note of the file: it became a digiKam tag tree
    (darktable/format/cr2) in the TagsList ramtag starts, and a keyword in a Lightroom sidecar."""
    merged = merge(DARKTABLE.encode(), PROVENANCE, result(["beach"]), now=clock()).decode()
    tags_list = element(merged, "digiKam:TagsList")
    assert "<rdf:li>holiday</rdf:li>" in tags_list and "darktable" not in tags_list
    assert "darktable|format|cr2" in element(merged, "lr:hierarchicalSubject")  # darktable's own field, as it was
    assert merge(merged.encode(), None) == DARKTABLE.encode()


def test_darktable_history_stays_byte_for_byte() -> None:
    merged = merge(DARKTABLE.encode(), PROVENANCE, result(["holiday", "beach"]), now=clock()).decode()
    for name in ("darktable:history", "darktable:masks_history"):
        assert element(DARKTABLE, name) in merged
    assert merged.startswith(DARKTABLE[: DARKTABLE.index("<dc:subject>")])
    assert element(merged, "dc:subject").count("holiday") == 1
    assert merge(merged.encode(), None) == DARKTABLE.encode()


@needs_exiftool
def test_exiftool_reads_the_keywords_and_everything_else_is_unchanged(tmp_path: Path) -> None:
    for name, original in (("lr.xmp", LIGHTROOM), ("dt.xmp", DARKTABLE)):
        before, after = tmp_path / f"before-{name}", tmp_path / name
        before.write_text(original, encoding="utf-8")
        after.write_bytes(merge(original.encode(), PROVENANCE, result(["cat", "dog"]), now=clock()))
        assert exiftool_everything_but_keywords(after) == exiftool_everything_but_keywords(before)
        was, now = exiftool_keywords(before), exiftool_keywords(after)
        assert set(now["Subject"]) == set(was["Subject"]) | {"cat", "dog"}
        mine = [tag for tag in ("cat", "dog") if tag not in was["Subject"]]  # Lightroom's has its own dog
        assert set(now["HierarchicalSubject"]) == set(was["HierarchicalSubject"]) | {f"ramtag|{t}" for t in mine}
        assert set(now["TagsList"]) >= {f"ramtag/{t}" for t in mine}
        for values in now.values():
            assert len(values) == len(set(values))


def test_rerun_changes_nothing_and_the_date_moves_only_with_the_tags() -> None:
    first = merge(LIGHTROOM.encode(), PROVENANCE, result(["cat"]), now=clock("2024-01-01T00:00:00Z"))
    assert merge(first, PROVENANCE, result(["cat"]), now=clock("2030-01-01T00:00:00Z")) is first
    rescored = merge(first, PROVENANCE, result(["cat"], [0.5]), now=clock("2030-01-01T00:00:00Z"))
    assert b"2030-01-01T00:00:00Z" in rescored and b"2024-01-01" not in rescored
    # A person deleting a ramtag keyword by hand: it comes back, the record (and date) does not change.
    edited = first.replace(b"\n     <rdf:li>cat</rdf:li>", b"", 1)
    again = merge(edited, PROVENANCE, result(["cat"]), now=clock("2030-01-01T00:00:00Z"))
    assert again == first


def test_new_settings_replace_only_ramtags_keywords() -> None:
    first = merge(LIGHTROOM.encode(), PROVENANCE, result(["cat", "dog", "sky"]), now=clock())
    other = Provenance("ram", "cd" * 32, "0.5", "settings-2", parent="auto|ramtag")
    second = merge(first, other, result(["tree"]), now=clock("2025-01-01T00:00:00Z")).decode()
    subject = element(second, "dc:subject")
    assert "cat" not in subject and "sky" not in subject and "<rdf:li>tree</rdf:li>" in subject
    assert "<rdf:li>dog</rdf:li>" in subject  # the person's, though ramtag no longer sees a dog
    hierarchy = element(second, "lr:hierarchicalSubject")
    assert "ramtag|" not in hierarchy.replace("auto|ramtag|tree", "") and "Animals|dog" in hierarchy
    assert "<rdf:li>auto/ramtag/tree</rdf:li>" in element(second, "digiKam:TagsList")
    assert second.count("<ramtag:Settings>") == 1 and "settings-2" in second
    assert merge(second.encode(), None) == LIGHTROOM.encode()


def test_a_started_hierarchy_gets_the_persons_flat_keywords_too() -> None:
    """darktable and digiKam stop reading dc:subject once a hierarchical field exists."""
    flat_only = DARKTABLE.replace(element(DARKTABLE, "lr:hierarchicalSubject"), "<lr:hierarchicalSubject/>")
    flat_only = flat_only.replace("\n   <lr:hierarchicalSubject/>", "")
    merged = merge(flat_only.encode(), PROVENANCE, result(["beach"]), now=clock()).decode()
    assert "<rdf:li>holiday</rdf:li>" in element(merged, "lr:hierarchicalSubject")
    assert "<rdf:li>holiday</rdf:li>" in element(merged, "digiKam:TagsList")
    assert merge(merged.encode(), None) == flat_only.encode()


def test_copies_become_the_persons_once_their_software_writes_the_field() -> None:
    """After ramtag started the hierarchy with a copy of 'holiday', darktable adds a keyword there:
    the field is the person's now, and so is the copy (clean would otherwise take 'holiday' away)."""
    flat_only = DARKTABLE.replace(element(DARKTABLE, "lr:hierarchicalSubject"), "<lr:hierarchicalSubject/>")
    flat_only = flat_only.replace("\n   <lr:hierarchicalSubject/>", "")
    merged = merge(flat_only.encode(), PROVENANCE, result(["beach"]), now=clock()).decode()
    hierarchy = element(merged, "lr:hierarchicalSubject")
    edited = merged.replace(hierarchy, hierarchy.replace("<rdf:Bag>", "<rdf:Bag>\n     <rdf:li>places|paris</rdf:li>"))
    cleaned = merge(edited.encode(), None).decode()
    kept = element(cleaned, "lr:hierarchicalSubject")
    assert "<rdf:li>holiday</rdf:li>" in kept and "<rdf:li>places|paris</rdf:li>" in kept and "beach" not in kept
    assert "digiKam:TagsList" not in cleaned  # digiKam's field held only what ramtag wrote: gone
    again = merge(edited.encode(), PROVENANCE, result(["beach"]), now=clock()).decode()
    assert "holiday" in element(again, "lr:hierarchicalSubject")
    assert "holiday" not in element(again, "ramtag:AddedHierarchicalSubject")  # no longer recorded as ramtag's
    assert "holiday" in element(again, "ramtag:AddedTagsList")  # digiKam's field: still only ramtag's copies


def test_new_sidecar_and_its_removal() -> None:
    created = merge(None, PROVENANCE, result(["cat"]), now=clock())
    assert created.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert merge(created, PROVENANCE, result(["cat"])) is created
    assert merge(created, None) is None  # nothing of anyone else's: the file can go


def test_escaping_control_characters_and_chinese_round_trip() -> None:
    tags = ["rock & roll", "<b>bold</b>", 'say "hi"', "it's", "bell\x07"]
    zh = ["摇滚", "粗体", "说“嗨”", "它的", "铃"]
    provenance = Provenance("ram_plus", "", "0.5", "s", parent='A&B "<x>"', lang="both")
    merged = merge(LIGHTROOM.encode(), provenance, result(tags, zh=zh), now=clock())
    assert b"\x07" not in merged and "bell\ufffd".encode() in merged
    assert "<rdf:li>rock &amp; roll</rdf:li>" in merged.decode()
    assert merge(merged, provenance, result(tags, zh=zh)) is merged
    assert merge(merged, None) == LIGHTROOM.encode()


@needs_exiftool
def test_exiftool_reads_escaped_and_chinese_tags(tmp_path: Path) -> None:
    tags = ["rock & roll", "<b>bold</b>", 'say "hi"', "it's"]
    zh = ["摇滚", "粗体", "说“嗨”", "它的"]
    provenance = Provenance("ram_plus", "", "0.5", "s", parent="标签 & <co>", lang="both")
    path = tmp_path / "a.xmp"
    path.write_bytes(merge(None, provenance, result(tags, zh=zh), now=clock()))
    found = exiftool_keywords(path)
    names = [name for pair in zip(tags, zh) for name in pair]
    assert found["Subject"] == names
    assert found["HierarchicalSubject"] == [f"标签 & <co>|{n}" for n in names]
    assert found["TagsList"] == [f"标签 & <co>/{n}" for n in names]


@needs_exiftool
def test_sidecars_rewritten_by_exiftool_are_still_understood(tmp_path: Path) -> None:
    path = tmp_path / "a.xmp"
    path.write_bytes(merge(LIGHTROOM.encode(), PROVENANCE, result(["cat", "dog"]), now=clock()))
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-xmp:Rating=5", str(path)], check=True)
    rewritten = path.read_bytes()
    assert b"<rdf:Description rdf:about=''\n  xmlns:ramtag=" in rewritten  # exiftool's own layout
    writer = SidecarWriter(PROVENANCE)
    assert writer.is_current(tmp_path / "a")
    other = Provenance("ram_plus", "", "0.5", "settings-2")
    path.write_bytes(merge(rewritten, other, result(["sky"]), now=clock()))
    assert path.read_bytes().count(b"<ramtag:Settings>") == 1
    assert clean(path) == "cleaned"
    found = exiftool_keywords(path, "-XMP-xmp:Rating", "-XMP-ramtag:all")
    assert found == {
        "Subject": ["Grandma's garden", "dog"],
        "HierarchicalSubject": ["Places|Grandma's garden", "Animals|dog"],
        "Rating": [5],
    }


def test_compact_attribute_form_is_read_and_replaced(tmp_path: Path) -> None:
    """Adobe's toolkit writes simple properties as attributes; ramtag's record may come back so."""
    compact = LIGHTROOM.replace(
        '   xmp:Rating="4"',
        f'    xmlns:ramtag="{RAMTAG}"\n   ramtag:Settings="settings-1"\n   ramtag:Date="2020-01-01T00:00:00Z"\n'
        '   ramtag:Model="ram_plus"\n   xmp:Rating="4"',
    ).replace("<rdf:li>Grandma's garden</rdf:li>", "<rdf:li>Grandma's garden</rdf:li>\n     <rdf:li>cat</rdf:li>")
    compact = compact.replace(
        "  </rdf:Description>",
        "   <ramtag:AddedSubject>\n    <rdf:Bag>\n     <rdf:li>cat</rdf:li>\n    </rdf:Bag>\n"
        "   </ramtag:AddedSubject>\n  </rdf:Description>",
    )
    (tmp_path / "a.jpg.xmp").write_text(compact, encoding="utf-8")
    assert SidecarWriter(PROVENANCE).is_current(tmp_path / "a.jpg")  # the attribute form counts
    merged = merge(compact.encode(), PROVENANCE, result(["sky"]), now=clock()).decode()
    assert "ramtag:Settings=" not in merged and merged.count("<ramtag:Settings>") == 1
    assert 'xmp:Rating="4"' in merged and "<rdf:li>cat</rdf:li>" not in element(merged, "dc:subject")
    cleaned = merge(merged.encode(), None).decode()
    assert "ramtag:" not in cleaned.replace(f'xmlns:ramtag="{RAMTAG}"', "")
    assert element(cleaned, "dc:subject") == element(LIGHTROOM, "dc:subject")


def test_empty_list_and_other_prefixes() -> None:
    odd = """<x:xmpmeta xmlns:x="adobe:ns:meta/"><RDF xmlns="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<Description xmlns:d="http://purl.org/dc/elements/1.1/"><d:subject><Bag/></d:subject></Description>
</RDF></x:xmpmeta>"""
    merged = merge(odd.encode(), PROVENANCE, result(["cat"]), now=clock()).decode()
    assert "<d:subject><Bag>\n <li>cat</li>\n</Bag></d:subject>" in merged
    assert 'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"' in merged  # rdf: declared for its own
    assert merge(merged.encode(), PROVENANCE, result(["cat"])) is not None


# -- refusing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, words",
    [
        (b"<x:xmpmeta><rdf:RDF>", "not valid XML"),
        (b"this is not xml", "not valid XML"),
        (b"", "not valid XML"),
        (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><r>&b;</r>', "DOCTYPE"),
        (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>', "DOCTYPE"),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><r/>', "ISO-8859-1"),
        ("<r/>".encode("utf-16"), "not UTF-8"),
        (b"<html><body>hello</body></html>", "no rdf:RDF"),
    ],
)
def test_what_is_not_an_xmp_sidecar_is_refused(content: bytes, words: str) -> None:
    with pytest.raises(SidecarError, match=words):
        merge(content, PROVENANCE, result(["cat"]))
    with pytest.raises(SidecarError, match=words):
        merge(content, None)


def test_a_bad_sidecar_is_left_alone_and_becomes_the_images_error(tmp_path: Path) -> None:
    image = tmp_path / "a.jpg"
    image.write_bytes(b"not opened")
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_bytes(b"<x:xmpmeta><broken")
    good = tmp_path / "b.jpg"
    records = [
        ImageRecord("a.jpg", result(["cat"]), 10, 10, None, image),
        ImageRecord("b.jpg", result(["dog"]), 10, 10, None, good),
        ImageRecord("c.jpg", None, None, None, "truncated", tmp_path / "c.jpg"),
    ]
    writer = SidecarWriter(PROVENANCE)
    out = writer.write(records)
    assert out[0].result is None and out[0].error.startswith("sidecar a.jpg.xmp: not valid XML")
    assert sidecar.read_bytes() == b"<x:xmpmeta><broken" and image.read_bytes() == b"not opened"
    assert out[1] == records[1] and (tmp_path / "b.jpg.xmp").is_file()
    assert out[2] == records[2] and not (tmp_path / "c.jpg.xmp").exists()
    assert not writer.is_current(image) and writer.is_current(good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.jpg.xmp", "b.jpg.xmp"]


# -- files -----------------------------------------------------------------------------------------


def test_sidecar_names(tmp_path: Path) -> None:
    raw = tmp_path / "IMG_0001.CR2"
    assert sidecar_path(raw, "ext").name == "IMG_0001.CR2.xmp"
    assert sidecar_path(raw, "replace").name == "IMG_0001.xmp"
    assert sidecar_path(raw).name == "IMG_0001.CR2.xmp"  # auto, none yet
    (tmp_path / "IMG_0001.xmp").write_text("x")
    assert sidecar_path(raw).name == "IMG_0001.xmp"  # auto: the one there
    (tmp_path / "IMG_0001.CR2.XMP").write_text("x")
    assert sidecar_path(raw).name == "IMG_0001.CR2.XMP"  # ext first, and its existing spelling
    assert sidecar_path(raw, "replace").name == "IMG_0001.xmp"
    with pytest.raises(ValueError):
        sidecar_path(raw, "sideways")


def test_atomic_write_keeps_permissions_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "a.xmp"
    path.write_text("old")
    path.chmod(0o640)
    write_atomically(path, b"new")
    assert path.read_bytes() == b"new" and (path.stat().st_mode & 0o777) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.xmp"]
    (tmp_path / "b.xmp").mkdir()  # a folder where the sidecar should be: the rename fails
    with pytest.raises(SidecarError, match="cannot write"):
        write_atomically(tmp_path / "b.xmp", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.xmp", "b.xmp"]


def test_clean_outcomes_and_search(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    ours = tmp_path / "sub" / "a.jpg.xmp"
    ours.write_bytes(merge(None, PROVENANCE, result(["cat"]), now=clock()))
    mixed = tmp_path / "b.XMP"
    mixed.write_bytes(merge(LIGHTROOM.encode(), PROVENANCE, result(["cat"]), now=clock()))
    foreign = tmp_path / "c.xmp"
    foreign.write_text(DARKTABLE)
    (tmp_path / ".hidden" / "d.xmp").write_text(DARKTABLE)
    (tmp_path / "notes.txt").write_text("x")
    found = list(find_sidecars([tmp_path]))
    assert found == [mixed, foreign, ours]
    assert len(list(find_sidecars([tmp_path], hidden=True))) == 4
    assert clean(mixed, dry_run=True) == "cleaned" and b"ramtag" in mixed.read_bytes()
    assert [clean(p) for p in found] == ["cleaned", "untouched", "removed"]
    assert mixed.read_text() == LIGHTROOM and foreign.read_text() == DARKTABLE and not ours.exists()


def test_a_tag_spelt_like_the_persons_own_keyword_never_sticks() -> None:
    """With --xmp-parent "" a tag `dog` is the keyword `dog` in the hierarchy too: beside the
    person's own flat `dog`, it read as their copy of it and stayed through re-runs and clean."""
    bare = Provenance("ram_plus", "ab" * 32, "0.5", "settings-1", parent="")
    original = LIGHTROOM.encode()
    merged = merge(original, bare, result(["dog", "sky"]), now=clock())
    hierarchy = element(merged.decode(), "lr:hierarchicalSubject")
    assert "<rdf:li>sky</rdf:li>" in hierarchy and "<rdf:li>dog</rdf:li>" not in hierarchy  # theirs already
    fewer = merge(merged, bare, result(["sky"]), now=clock())
    assert "sky" in element(fewer.decode(), "lr:hierarchicalSubject")
    assert merge(fewer, bare, result(["cat"]), now=clock()).decode().count("<rdf:li>sky</rdf:li>") == 0
    assert merge(merged, None) == original and merge(fewer, None) == original


def test_a_tag_is_the_persons_keyword_whatever_its_case() -> None:
    """Lightroom and digiKam hold one keyword `Dog`: ramtag's `dog` beside it would be a second one."""
    capital = LIGHTROOM.replace("<rdf:li>dog</rdf:li>", "<rdf:li>Dog</rdf:li>").replace("Animals|dog", "Animals|Dog")
    merged = merge(capital.encode(), PROVENANCE, result(["dog", "sky"]), now=clock()).decode()
    subject = element(merged, "dc:subject")
    assert "<rdf:li>Dog</rdf:li>" in subject and "<rdf:li>dog</rdf:li>" not in subject
    assert "<rdf:li>sky</rdf:li>" in subject and "dog" not in element(merged, "ramtag:AddedSubject")
    assert "ramtag|dog" not in element(merged, "lr:hierarchicalSubject")  # digiKam would write its name, `dog`
    assert merge(merged.encode(), None) == capital.encode()
    bare = Provenance("ram_plus", "ab" * 32, "0.5", "settings-1", parent="")
    flat = merge(capital.encode(), bare, result(["dog", "SKY", "sky"]), now=clock()).decode()
    hierarchy = element(flat, "lr:hierarchicalSubject")
    assert "<rdf:li>dog</rdf:li>" not in hierarchy and hierarchy.count("SKY") + hierarchy.count("sky") == 1


# -- keywords inside the photo ---------------------------------------------------------------------

PHOTO_XMP = """<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>
<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>
 <rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'
   xmlns:lr='http://ns.adobe.com/lightroom/1.0/' xmlns:ramtag='https://ramtag.invalid/ns/xmp/1.0/'>
  <dc:subject><rdf:Bag><rdf:li>Dog</rdf:li><rdf:li>Grandma</rdf:li><rdf:li>Animals</rdf:li>
   <rdf:li>tree</rdf:li></rdf:Bag></dc:subject>
  <lr:hierarchicalSubject><rdf:Bag><rdf:li>Animals|Dog</rdf:li></rdf:Bag></lr:hierarchicalSubject>
  <ramtag:AddedSubject><rdf:Bag><rdf:li>tree</rdf:li></rdf:Bag></ramtag:AddedSubject>
 </rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end='w'?>"""


def photo_with_keywords(path: Path, packet: str = PHOTO_XMP) -> Path:
    from PIL import Image, PngImagePlugin

    image = Image.new("RGB", (8, 8), (200, 100, 50))
    if path.suffix == ".png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", packet)
        image.save(path, pnginfo=info)
    elif path.suffix == ".tif":
        image.save(path, tiffinfo={700: packet.encode()})
    else:
        image.save(path, xmp=packet.encode())
    return path


@pytest.mark.parametrize("name", ["p.jpg", "p.png", "p.tif", "p.webp"])
def test_the_keywords_inside_a_photo_are_read_without_ramtags(tmp_path: Path, name: str) -> None:
    from ramtag.outputs.inside import photo_keywords

    found = photo_keywords(photo_with_keywords(tmp_path / name))
    assert found["AddedSubject"] == ["Dog", "Grandma", "Animals"]  # 'tree' was ramtag's (--embed)
    assert found["AddedHierarchicalSubject"] == ["Animals|Dog", "Grandma"]  # a flat one no path names: top level
    assert found["AddedTagsList"] == []
    (tmp_path / "raw.cr2").write_bytes(b"II*\x00 not really")
    assert photo_keywords(tmp_path / "raw.cr2") == {"AddedSubject": [], "AddedHierarchicalSubject": [], "AddedTagsList": []}


def test_a_new_sidecar_copies_the_keywords_inside_the_photo(tmp_path: Path) -> None:
    """Immich takes a sidecar's keyword fields over the photo's: a sidecar with ramtag's alone
    would hide the person's keywords inside the JPEG."""
    photo = photo_with_keywords(tmp_path / "a.jpg")
    before = photo.read_bytes()
    writer = SidecarWriter(PROVENANCE)
    writer.write([ImageRecord("a.jpg", result(["dog", "sky"]), 8, 8, None, photo)])
    sidecar = (tmp_path / "a.jpg.xmp").read_text()
    subject = element(sidecar, "dc:subject")
    assert [w in subject for w in ("<rdf:li>Dog</rdf:li>", "Grandma", "sky", "tree", "<rdf:li>dog</rdf:li>")] == [
        True, True, True, False, False]
    hierarchy = element(sidecar, "lr:hierarchicalSubject")
    assert "Animals|Dog" in hierarchy and "<rdf:li>Grandma</rdf:li>" in hierarchy and "ramtag|dog" not in hierarchy
    assert "Animals/Dog" in element(sidecar, "digiKam:TagsList")
    assert photo.read_bytes() == before
    assert clean(tmp_path / "a.jpg.xmp") == "removed"  # the copies were ramtag's to take out

    theirs = tmp_path / "b.jpg"
    photo_with_keywords(theirs)
    (tmp_path / "b.jpg.xmp").write_text(DARKTABLE)  # their software's sidecar has keywords of its own
    SidecarWriter(PROVENANCE).write([ImageRecord("b.jpg", result(["sky"]), 8, 8, None, theirs)])
    kept = (tmp_path / "b.jpg.xmp").read_text()
    assert "Grandma" not in kept and "Dog" not in kept and "holiday" in element(kept, "dc:subject")


@needs_exiftool
def test_iptc_keywords_count_where_the_photo_has_no_xmp_keywords(tmp_path: Path) -> None:
    from PIL import Image

    from ramtag.outputs.inside import photo_keywords

    photo = tmp_path / "old.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:Keywords=scan", "-IPTC:Keywords=café",
                    "-charset", "iptc=latin", str(photo)], check=True)
    assert photo_keywords(photo)["AddedSubject"] == ["scan", "café"]
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=newer", str(photo)], check=True)
    assert photo_keywords(photo)["AddedSubject"] == ["newer"]  # XMP's dc:subject wins, as readers do


def test_a_read_only_sidecar_is_never_replaced(tmp_path: Path) -> None:
    """A new sidecar renamed over it worked in a writable folder, undoing the read-only mode."""
    image = tmp_path / "a.jpg"
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(LIGHTROOM)
    sidecar.chmod(0o444)
    out = SidecarWriter(PROVENANCE).write([ImageRecord("a.jpg", result(["cat"]), 10, 10, None, image)])
    assert out[0].error == "sidecar a.jpg.xmp: the sidecar is read-only: ramtag does not change it (make it " \
        "writable with chmod u+w)"
    assert sidecar.read_text() == LIGHTROOM
    sidecar.chmod(0o644)
    assert SidecarWriter(PROVENANCE).write([ImageRecord("a.jpg", result(["cat"]), 10, 10, None, image)])[0].error is None
    sidecar.chmod(0o444)
    for dry_run in (True, False):
        with pytest.raises(SidecarError, match="read-only"):
            clean(sidecar, dry_run=dry_run)
    assert "ramtag" in sidecar.read_text()


def test_copies_of_the_photos_keywords_are_theirs_once_their_software_writes_the_sidecar(tmp_path: Path) -> None:
    """digiKam writes back every keyword it shows: a later run, or clean, took the copies out."""
    photo = photo_with_keywords(tmp_path / "a.jpg")
    sidecar = tmp_path / "a.jpg.xmp"
    SidecarWriter(PROVENANCE).write([ImageRecord("a.jpg", result(["sky"]), 8, 8, None, photo)])
    text = sidecar.read_text()
    subject = element(text, "dc:subject")
    sidecar.write_text(text.replace(subject, subject.replace("<rdf:Bag>", "<rdf:Bag>\n     <rdf:li>Holiday</rdf:li>")))
    other = Provenance("ram", "cd" * 32, "0.5", "settings-2")
    SidecarWriter(other).write([ImageRecord("a.jpg", result(["tree"]), 8, 8, None, photo)])
    again = sidecar.read_text()
    kept = element(again, "dc:subject")
    assert all(f"<rdf:li>{k}</rdf:li>" in kept for k in ("Holiday", "Dog", "Grandma", "tree")) and "sky" not in kept
    assert "Animals|Dog" in element(again, "lr:hierarchicalSubject")
    assert clean(sidecar) == "cleaned"
    cleaned = element(sidecar.read_text(), "dc:subject")
    assert all(f"<rdf:li>{k}</rdf:li>" in cleaned for k in ("Holiday", "Dog", "Grandma")) and "tree" not in cleaned


def test_a_started_hierarchy_keeps_the_persons_spelling(tmp_path: Path) -> None:
    """With --xmp-parent "", ramtag's `dog` stood in the hierarchy where the person's `Dog` belonged."""
    flat_only = DARKTABLE.replace(element(DARKTABLE, "lr:hierarchicalSubject"), "").replace(
        "<rdf:li>holiday</rdf:li>", "<rdf:li>Dog</rdf:li>")
    bare = Provenance("ram_plus", "ab" * 32, "0.5", "settings-1", parent="")
    merged = merge(flat_only.encode(), bare, result(["dog", "sky"]), now=clock()).decode()
    for field in ("lr:hierarchicalSubject", "digiKam:TagsList"):
        values = element(merged, field)
        assert "<rdf:li>Dog</rdf:li>" in values and "<rdf:li>dog</rdf:li>" not in values, field
    assert merge(merged.encode(), None) == flat_only.encode()


def test_a_new_sidecar_copies_the_keywords_of_the_other_naming(tmp_path: Path) -> None:
    """--xmp-naming ext beside Lightroom's IMG_1.xmp: Immich and digiKam read the new IMG_1.JPG.xmp."""
    from PIL import Image

    photo = tmp_path / "IMG_1.JPG"
    Image.new("RGB", (8, 8)).save(photo)
    (tmp_path / "IMG_1.xmp").write_text(LIGHTROOM)
    SidecarWriter(PROVENANCE, naming="ext").write([ImageRecord("IMG_1.JPG", result(["sky"]), 8, 8, None, photo)])
    created = (tmp_path / "IMG_1.JPG.xmp").read_text()
    assert "Grandma's garden" in element(created, "dc:subject") and "Animals|dog" in element(created, "lr:hierarchicalSubject")
    assert (tmp_path / "IMG_1.xmp").read_text() == LIGHTROOM


@needs_exiftool
def test_iptc_changed_after_the_xmp_and_mpo_files_count(tmp_path: Path) -> None:
    from PIL import Image

    from ramtag.outputs.inside import photo_keywords

    photo = tmp_path / "both.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-dc:Subject=Dog", "-IPTC:Keywords=Dog", str(photo)],
                   check=True)
    assert photo_keywords(photo)["AddedSubject"] == ["Dog"]  # a current digest: the XMP is what readers take
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:Keywords+=Family",
                    "-Photoshop:IPTCDigest=0123456789abcdef0123456789abcdef", str(photo)], check=True)
    assert photo_keywords(photo)["AddedSubject"] == ["Dog", "Family"]  # changed since: the IPTC's too
    mpo = tmp_path / "camera.jpg"  # Pillow calls a JPEG with an MPF segment (many cameras') MPO
    Image.new("RGB", (8, 8)).save(mpo, "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8))])
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-IPTC:Keywords=Dog", str(mpo)], check=True)
    assert Image.open(mpo).format == "MPO" and photo_keywords(mpo)["AddedSubject"] == ["Dog"]


def _run(provenance: Provenance, photo: Path, tags: list[str], naming: str = "auto") -> None:
    SidecarWriter(provenance, naming=naming, now=clock()).write([ImageRecord(photo.name, result(tags), 8, 8, None, photo)])


OTHER = Provenance("ram", "cd" * 32, "0.5", "settings-2")


def test_a_tag_spelt_like_a_keyword_in_the_photo_is_never_taken_for_a_copy(tmp_path: Path) -> None:
    """Beside their darktable sidecar (no copies made), ramtag's `dog` read as a copy of the photo's
    `dog` written back, and stayed through clean."""
    photo = photo_with_keywords(tmp_path / "a.jpg", PHOTO_XMP.replace(">Dog<", ">dog<").replace("|Dog", "|dog"))
    sidecar = tmp_path / "a.jpg.xmp"
    sidecar.write_text(DARKTABLE)
    _run(PROVENANCE, photo, ["dog", "sky"])
    once = sidecar.read_bytes()
    _run(PROVENANCE, photo, ["dog", "sky"])
    assert sidecar.read_bytes() == once  # the same settings: not a byte changed
    assert clean(sidecar) == "cleaned" and sidecar.read_text() == DARKTABLE


def test_copies_survive_clean_a_change_of_naming_and_later_runs(tmp_path: Path) -> None:
    """Lightroom's IMG_1.xmp beside a raw: copies in IMG_1.CR2.xmp that darktable wrote back were taken
    out by clean, and by a run with --xmp-naming replace; a third run flattened the photo's paths."""
    raw = tmp_path / "IMG_1.CR2"
    raw.write_bytes(b"II*\x00 raw")
    (tmp_path / "IMG_1.xmp").write_text(LIGHTROOM)
    _run(PROVENANCE, raw, ["sky"], naming="ext")
    ext = tmp_path / "IMG_1.CR2.xmp"
    assert "Animals|dog" in element(ext.read_text(), "lr:hierarchicalSubject")
    _run(OTHER, raw, ["tree"], naming="replace")  # IMG_1.xmp is Lightroom's: ext is kept up to date
    kept = ext.read_text()
    assert "Grandma's garden" in element(kept, "dc:subject") and "Animals|dog" in element(kept, "lr:hierarchicalSubject")
    text = ext.read_text()
    subject = element(text, "dc:subject")
    ext.write_text(text.replace(subject, subject.replace("<rdf:Bag>", "<rdf:Bag>\n     <rdf:li>Holiday</rdf:li>")))
    third = Provenance("ram", "ef" * 32, "0.5", "settings-3")
    _run(third, raw, ["cat"], naming="ext")
    later = ext.read_text()
    assert "Animals|dog" in element(later, "lr:hierarchicalSubject")  # still the photo's path, not a flat `dog`
    assert "Holiday" in element(later, "dc:subject")
    assert clean(ext) == "cleaned"
    cleaned = element(ext.read_text(), "dc:subject")
    assert "Holiday" in cleaned and "Grandma's garden" in cleaned and "cat" not in cleaned


def _as_digikam_writes(sidecar: Path, tags: list[str]) -> None:
    """digiKam rewrites the three keyword lists from the tags it shows: names, `|` and `/` paths."""
    args = ["-XMP-dc:Subject=", "-XMP-lr:HierarchicalSubject=", "-XMP-digiKam:TagsList="]
    for tag in tags:
        args += [f"-XMP-dc:Subject={tag.rpartition('/')[2]}", f"-XMP-lr:HierarchicalSubject={tag.replace('/', '|')}",
                 f"-XMP-digiKam:TagsList={tag}"]
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", *args, str(sidecar)], check=True)


@needs_exiftool
def test_what_digikam_writes_back_is_theirs_and_ramtags_tags_never_stick(tmp_path: Path) -> None:
    """Their `Night` beside ramtag's `ramtag/night`: digiKam wrote `night` into dc:subject, which
    clean left for good. A keyword they removed in digiKam came back as a copy, and clean then took
    their own paths out."""
    photo = photo_with_keywords(tmp_path / "a.jpg", PHOTO_XMP.replace(">Grandma<", ">Night<"))
    sidecar = tmp_path / "a.jpg.xmp"
    _run(PROVENANCE, photo, ["night", "sky", "building"])
    shown = exiftool_keywords(sidecar)
    assert "night" not in shown["Subject"] and "ramtag/night" not in shown["TagsList"]  # they have Night
    kept = [t for t in shown["TagsList"] if t != "Animals/Dog"] + ["building"]  # one removed, a top-level one added
    _as_digikam_writes(sidecar, kept)
    _run(OTHER, photo, ["tree"])
    after = exiftool_keywords(sidecar)
    assert "Animals/Dog" not in after["TagsList"] and "Animals|Dog" not in after["HierarchicalSubject"]
    assert clean(sidecar) == "cleaned"
    left = exiftool_keywords(sidecar)
    assert "tree" not in left["Subject"] and "sky" not in left["Subject"]  # ramtag's own, taken out
    assert {"Night", "building"} <= set(left["Subject"]) and "night" not in left["Subject"]
    assert "building" in left["TagsList"]


def test_a_photo_with_digikams_tags_alone_gives_its_paths_to_every_field(tmp_path: Path) -> None:
    tags_only = PHOTO_XMP.replace(
        "<dc:subject><rdf:Bag><rdf:li>Dog</rdf:li><rdf:li>Grandma</rdf:li><rdf:li>Animals</rdf:li>\n   <rdf:li>tree</rdf:li></rdf:Bag></dc:subject>",
        "").replace("<lr:hierarchicalSubject><rdf:Bag><rdf:li>Animals|Dog</rdf:li></rdf:Bag></lr:hierarchicalSubject>",
                    "<digiKam:TagsList xmlns:digiKam='http://www.digikam.org/ns/1.0/'><rdf:Seq><rdf:li>Animals/Dog</rdf:li>"
                    "<rdf:li>People/Anna</rdf:li></rdf:Seq></digiKam:TagsList>")
    photo = photo_with_keywords(tmp_path / "a.jpg", tags_only)
    _run(PROVENANCE, photo, ["sky"])
    text = (tmp_path / "a.jpg.xmp").read_text()
    assert "Animals|Dog" in element(text, "lr:hierarchicalSubject") and "People|Anna" in text
    assert "<rdf:li>Anna</rdf:li>" in element(text, "dc:subject") and "People/Anna" in element(text, "digiKam:TagsList")


def test_an_image_named_to_clean_brings_its_sidecars(tmp_path: Path) -> None:
    """`ramtag xmp clean p1.jpg` said "0 sidecars" beside p1.jpg.xmp and p1.xmp holding ramtag's entries."""
    from PIL import Image

    photo = tmp_path / "p1.jpg"
    Image.new("RGB", (8, 8)).save(photo)
    for naming in ("ext", "replace"):
        _run(PROVENANCE, photo, ["sky"], naming=naming)
    (tmp_path / "p2.jpg.xmp").write_text(LIGHTROOM)  # another image's
    assert sorted(p.name for p in find_sidecars([photo])) == ["p1.jpg.xmp", "p1.xmp"]
    import os

    os.link(tmp_path / "p1.jpg.xmp", tmp_path / "p1.jpg.XMP")  # as a case-insensitive disk shows one file
    assert sorted(p.name for p in find_sidecars([photo])) == ["p1.jpg.xmp", "p1.xmp"]


def test_sidecars_whose_keywords_are_paths_alone_clean_back_exactly() -> None:
    """A darktable sidecar of an untagged photo (its own paths, no dc:subject), or a Lightroom keyword
    kept out of dc:subject: the names ramtag copied, and a tag of its own, were taken for the person's."""
    tags_list = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n'
                 ' <rdf:Description rdf:about="" xmlns:digiKam="http://www.digikam.org/ns/1.0/">\n'
                 '  <digiKam:TagsList><rdf:Seq><rdf:li>People/Anna</rdf:li></rdf:Seq></digiKam:TagsList>\n'
                 ' </rdf:Description></rdf:RDF></x:xmpmeta>').encode()
    not_exported = LIGHTROOM.replace("     <rdf:li>dog</rdf:li>\n", "").encode()  # Animals|dog in the hierarchy only
    for original, tags in ((tags_list, ["sky"]), (not_exported, ["dog", "cat"])):
        merged = merge(original, PROVENANCE, result(tags), now=clock())
        assert merge(merged, PROVENANCE, result(tags), now=clock("2030-01-01T00:00:00Z")) == merged
        assert merge(merged, None) == original
    assert "<rdf:li>dog</rdf:li>" not in element(merge(not_exported, PROVENANCE, result(["dog"]), now=clock()).decode(),
                                                  "dc:subject")  # their hierarchy has dog
