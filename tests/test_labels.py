"""Tag lists and thresholds in the official formats."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import SHARED
from ramtag.errors import RamtagWarning, VocabularyError
from ramtag.model.labels import DEFAULT_THRESHOLD, TagVocabulary

RAM_DATA = SHARED / "ram_data"


def test_official_lists_read_as_released() -> None:
    vocabulary = TagVocabulary.from_files(
        RAM_DATA / "ram_tag_list.txt",
        RAM_DATA / "ram_tag_list_chinese.txt",
        RAM_DATA / "ram_tag_list_threshold.txt",
    )
    assert len(vocabulary) == 4585
    assert vocabulary.tags[-1] == "zoo"
    assert vocabulary.thresholds.dtype == np.float32
    # The Chinese list has stray trailing spaces upstream; names come out clean.
    assert all(name == name.strip() and name for name in vocabulary.tags_zh)
    raw_zh = (RAM_DATA / "ram_tag_list_chinese.txt").read_text(encoding="utf-8").splitlines()
    assert any(line != line.strip() for line in raw_zh)
    raw_thresholds = (RAM_DATA / "ram_tag_list_threshold.txt").read_text().split()
    np.testing.assert_allclose(vocabulary.thresholds, [float(t) for t in raw_thresholds], atol=1e-7)


def test_short_thresholds_file_leaves_the_default(tmp_path: Path) -> None:
    (tmp_path / "tags.txt").write_text("a\nb\nc\n", encoding="utf-8")
    (tmp_path / "thr.txt").write_text("0.5\n0.9\n", encoding="utf-8")
    with pytest.warns(RamtagWarning, match=r"thr.txt: 2 thresholds for the 3 tags of .*tags.txt; the other 1 keep 0.68"):
        vocabulary = TagVocabulary.from_files(tmp_path / "tags.txt", thresholds=tmp_path / "thr.txt")
    np.testing.assert_allclose(vocabulary.thresholds, [0.5, 0.9, DEFAULT_THRESHOLD])
    assert vocabulary.tags_zh is None


def test_selection_is_strictly_greater(tmp_path: Path) -> None:
    vocabulary = TagVocabulary.from_names(["a", "b", "c"], [0.5, 0.5, 0.5])
    mask = vocabulary.selected(np.array([0.5, 0.50001, 0.2], dtype=np.float32))
    assert mask.tolist() == [False, True, False]
    assert vocabulary.with_threshold(0.1).selected(np.array([0.5, 0.5, 0.2])).all()


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"thr.txt": "0.5\nlots\n"}, "thr.txt:2: 'lots' is not a number"),
        ({"thr.txt": "0.5\n1.5\n"}, "outside"),
        ({"thr.txt": "0.5\n0.5\n0.5\n0.5\n"}, "4 thresholds but"),
        ({"zh.txt": "甲\n"}, "1 Chinese tags but"),
    ],
)
def test_mismatched_files_are_one_line_errors(tmp_path: Path, files: dict, message: str) -> None:
    (tmp_path / "tags.txt").write_text("a\nb\nc\n", encoding="utf-8")
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    kwargs = {}
    if "thr.txt" in files:
        kwargs["thresholds"] = tmp_path / "thr.txt"
    if "zh.txt" in files:
        kwargs["tag_list_zh"] = tmp_path / "zh.txt"
    with pytest.raises(VocabularyError, match=message):
        TagVocabulary.from_files(tmp_path / "tags.txt", **kwargs)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(VocabularyError, match="tag list not found"):
        TagVocabulary.from_files(tmp_path / "absent.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(VocabularyError, match="not UTF-8"):
        TagVocabulary.from_files(tmp_path / "bin.txt")


def test_extend_appends_open_set_tags() -> None:
    base = TagVocabulary.from_names(["cat", "dog"], [0.7, 0.8], ["猫", "狗"])
    extra = TagVocabulary.from_names(["red umbrella"], [0.5])
    both = base.extend(extra)
    assert both.tags == ("cat", "dog", "red umbrella")
    assert both.tags_zh == ("猫", "狗", "red umbrella")
    np.testing.assert_allclose(both.thresholds, [0.7, 0.8, 0.5])


@pytest.mark.parametrize(
    ("tags", "zh", "message"),
    [
        (["cat", "red|blue"], None, "'red|blue' contains '|'"),
        (["cat", "dog"], ["猫", "狗|犬"], "'狗|犬' contains '|'"),
        (["cat", "dog", "cat"], None, "'cat' is in the vocabulary twice"),
    ],
)
def test_names_that_outputs_could_not_tell_apart_are_refused(tags: list[str], zh: list[str] | None, message: str) -> None:
    with pytest.raises(VocabularyError, match=re.escape(message)):
        TagVocabulary.from_names(tags, tags_zh=zh)


def test_a_tag_list_with_a_tag_twice_is_refused_in_one_line(tmp_path: Path) -> None:
    listed = tmp_path / "tags.txt"
    listed.write_text("cat\ndog\ncat\n", encoding="utf-8")
    with pytest.raises(VocabularyError) as raised:
        TagVocabulary.from_files(listed)
    assert str(raised.value).startswith(f"{listed}: tag 'cat' is in the vocabulary twice") and "\n" not in str(raised.value)


def test_thresholds_files_with_and_without_tag_names(tmp_path: Path) -> None:
    from ramtag.model.labels import read_named_thresholds, read_thresholds

    plain = tmp_path / "plain.txt"
    plain.write_text("0.5\t\n0.61\n", encoding="utf-8")  # a spreadsheet's trailing tab is whitespace
    assert read_named_thresholds(plain) is None and read_thresholds(plain) == [0.5, 0.61]
    named = tmp_path / "named.txt"
    named.write_text("0.5\tred umbrella\n0.61\tsky\n", encoding="utf-8")
    assert read_named_thresholds(named) == {"red umbrella": 0.5, "sky": 0.61}
    with pytest.raises(VocabularyError, match="named.txt:1: a threshold with its tag's name"):
        read_thresholds(named)
    named.write_text("0.5\tsky\n0.61\n", encoding="utf-8")
    with pytest.raises(VocabularyError, match="named.txt:2: no tag name after the threshold"):
        read_named_thresholds(named)


def test_one_threshold_for_every_tag_wins_over_a_named_file(tmp_path: Path, ramplus_tiny) -> None:
    from ramtag import load_tagger

    named = tmp_path / "named.txt"
    named.write_text("0.1\tcat\n", encoding="utf-8")
    tagger = load_tagger(ramplus_tiny.checkpoint, tag_list=ramplus_tiny.tags, thresholds=named, threshold=0.3,
                         device="cpu", precision="fp32")
    assert np.allclose(tagger.vocabulary.thresholds, 0.3)
    with pytest.warns(RamtagWarning, match="has no threshold for 15 of the 16 tags of this run"):
        tagger = load_tagger(ramplus_tiny.checkpoint, tag_list=ramplus_tiny.tags, thresholds=named, device="cpu",
                             precision="fp32")
    assert tagger.vocabulary.thresholds[tagger.vocabulary.tags.index("cat")] == pytest.approx(0.1)


def test_a_thresholds_file_the_length_of_the_tag_list_is_the_tag_lists() -> None:
    from ramtag.vocabulary import split_thresholds

    values = [0.5] * 16
    # 14 --only-tags and 2 --tags: 16 values are the tag list's own file, not theirs in a row
    assert split_thresholds(Path("t.txt"), values, tags=16, scored=14, open_tags=2, vocab="both") == (None, None)
    assert split_thresholds(Path("t.txt"), [0.1] * 5, tags=16, scored=3, open_tags=2, vocab="both") == ([0.1] * 3, [0.1] * 2)
    assert split_thresholds(Path("t.txt"), [0.1] * 2, tags=16, scored=16, open_tags=2, vocab="open") == (None, [0.1] * 2)
