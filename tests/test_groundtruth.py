"""Label files: the shared excerpts of the paper's four benchmarks, user CSVs, matching, fetching."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from ramtag import groundtruth
from ramtag.errors import ChecksumError, ResourceUnavailableError, UsageError
from ramtag.groundtruth import (
    BENCHMARKS,
    GroundTruthError,
    align,
    benchmark_file,
    guess_dialect,
    ImageFinder,
    match_vocabulary,
    parse_ground_truth,
    read_ground_truth,
    read_taglist,
)
from ramtag.model.registry import OFFICIAL_COMMIT, DataFile

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RAM_DATA = SHARED / "ram_data"
BENCH = RAM_DATA / "benchmarks"
COMMON = BENCH / "openimages_common_214"
RARE = BENCH / "openimages_rare_200"
IMAGENET = BENCH / "imagenet_multi"
HICO = BENCH / "hico"


def lines(path: Path, *numbers: int) -> str:
    """Lines of a shared file by 1-based number, as an excerpt to parse."""
    text = path.read_text(encoding="utf-8").splitlines()
    return "".join(text[n - 1] + "\n" for n in numbers)


@pytest.fixture(scope="module")
def vocabulary() -> list[str]:
    return read_taglist(RAM_DATA / "ram_tag_list.txt")


def test_openimages_common_excerpt(vocabulary: list[str]) -> None:
    taglist = read_taglist(COMMON / "openimages_common_214_ram_taglist.txt")
    assert len(taglist) == 214
    text = lines(COMMON / "openimages_common_214_ram_annots.txt", 1, 2, 3, 4, 8)
    assert guess_dialect(text) == "openimages"
    gt = parse_ground_truth(text, taglist=taglist)
    assert gt.dialect == "openimages"
    assert gt.images == ("test/0000c64e1253d68f", "test/0002ab0af02e4a77", "test/000411001ff7dd4f",
                         "test/00045d609ca3f4eb", "test/000ccf1d00f7f1cd")
    assert [[taglist[i] for i in labels] for labels in gt.labels] == [
        ["car"], ["flower"], ["chicken"], sorted(["pumpkin", "halloween"], key=taglist.index),
        sorted(["pet", "dog"], key=taglist.index),
    ]
    assert not gt.unknown_labels
    match = match_vocabulary(gt.classes, vocabulary)
    assert match.unknown == () and len(match.classes) == 214  # the common tags are all RAM tags
    assert vocabulary[match.vocabulary_index[taglist.index("car")]] == "car"


def test_openimages_rare_excerpt_has_names_with_spaces(vocabulary: list[str]) -> None:
    taglist = read_taglist(RARE / "openimages_rare_200_ram_taglist.txt")
    gt = parse_ground_truth(lines(RARE / "openimages_rare_200_ram_annots.txt", 1, 2, 3), taglist=taglist)
    assert [taglist[gt.labels[i][0]] for i in range(3)] == ["Auto racing", "Residential area", "Lawn game"]
    assert len(match_vocabulary(taglist, vocabulary).unknown) == 200  # open-set tags, by design


def test_imagenet_excerpt_with_an_unlabelled_line_and_a_repeated_tag(vocabulary: list[str]) -> None:
    taglist = read_taglist(IMAGENET / "imagenet_multi_1000_taglist.txt")
    assert len(taglist) == 1000
    assert [i for i, name in enumerate(taglist) if name == "missile"] == [657, 744]
    assert [i for i, name in enumerate(taglist) if name == "sunglasses"] == [836, 837]
    text = lines(IMAGENET / "imagenet_multi_1000_annots.txt", 1, 2, 255, 468, 621)
    assert text.splitlines()[0] == "ILSVRC2012_val_00000001.JPEG"  # no comma: no label
    assert guess_dialect(text) == "indices"
    gt = parse_ground_truth(text, taglist=taglist)
    assert gt.images[0] == "ILSVRC2012_val_00000001.JPEG" and gt.labels[0] == ()
    assert gt.labels[1] == (795, 970)
    assert gt.labels[2] == (801, 836, 837, 983)
    assert gt.labels[3] == (657,)  # one missile line, not the other: numbers are lines, not names
    assert gt.labels[4] == (657, 744)
    targets = gt.targets(range(5), [657, 744])
    np.testing.assert_array_equal(targets, [[0, 0], [0, 0], [0, 0], [1, 0], [1, 1]])
    match = match_vocabulary(taglist, vocabulary)
    both = [int(v) for c, v in zip(match.classes, match.vocabulary_index) if c in (657, 744)]
    assert both == [vocabulary.index("missile")] * 2  # both lines are the model's one tag
    assert (len(match.classes), len(match.unknown)) == (369, 631)  # 'missile' and 'sunglasses' twice each


def test_hico_excerpt_and_its_taglist_without_final_newline(vocabulary: list[str]) -> None:
    assert not (HICO / "hico_600_taglist.txt").read_bytes().endswith(b"\n")
    taglist = read_taglist(HICO / "hico_600_taglist.txt")
    assert len(taglist) == 600 and taglist[0] == "person board airplane"
    gt = read_ground_truth(HICO / "hico_600_annots.txt", taglist=taglist)
    assert gt.dialect == "indices" and len(gt.images) == 9658
    assert gt.labels[1] == (131, 139, 143)
    assert len(match_vocabulary(taglist, vocabulary).unknown) == 600  # interaction phrases


def test_name_taglist_naming_one_tag_twice_labels_both_lines() -> None:
    gt = parse_ground_truth("a.jpg,missile\nb.jpg,cat\n", taglist=["missile", "cat", "missile"], dialect="openimages")
    assert gt.labels == ((0, 2), (1,))


def test_csv_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(
        'path,width,tags\n'
        'a.jpg,3,cat|dog\n'
        '"b, with comma.jpg",4,\n'
        'c.jpg,5, dog | unicorn \n'
        '\n'
        'a.jpg,3,tree\n',
        encoding="utf-8",
    )
    gt = read_ground_truth(path, taglist=None)
    assert gt.dialect == "csv"
    assert gt.images == ("a.jpg", "b, with comma.jpg", "c.jpg")
    assert gt.classes == ("cat", "dog", "unicorn", "tree")
    assert gt.labels == ((0, 1, 3), (), (1, 2))
    assert gt.repeated_images == 1
    with_list = read_ground_truth(path, taglist=["dog", "cat"])
    assert with_list.labels == ((0, 1), (), (0,))
    assert with_list.unknown_labels == {"unicorn": 1, "tree": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x.jpg,0 7\n", ":1: class number 7"),
        ("x.jpg,0\ny.jpg,1 b\n", ":2: expected class numbers"),
    ],
)
def test_bad_indices_name_the_line(text: str, message: str) -> None:
    with pytest.raises(GroundTruthError, match=message):
        parse_ground_truth(text, taglist=["a", "b"], dialect="indices", source="labels.txt")


def test_indices_need_a_taglist_and_csv_a_header() -> None:
    with pytest.raises(UsageError, match="--gt-classes"):
        parse_ground_truth("x.jpg,1 2\n")
    with pytest.raises(GroundTruthError, match="header"):
        parse_ground_truth("x.jpg,cat\n", dialect="csv")
    with pytest.raises(GroundTruthError, match="blank line"):
        read_taglist_text("cat\n\ndog\n")
    for header in ("file,labels", "Image,Tags", "image_id,classes,source"):  # not an image labelled "labels"
        with pytest.raises(GroundTruthError, match=f"first line '{header}' looks like a header; .*path,tags"):
            parse_ground_truth(f"{header}\na.jpg,cat\n", source="labels.csv")
    assert parse_ground_truth("test/0001,Dog,Person\n").images == ("test/0001",)  # OpenImages: no header
    for text in ('[{"red umbrella": ["a photo of a red umbrella."]}]\n', '{"path": "a.jpg"}\n'):  # describe's
        with pytest.raises(GroundTruthError, match="d.json: JSON, not labels: a labels file is a CSV with a path,tags"):
            parse_ground_truth(text, source="d.json")
    assert parse_ground_truth("[2019] trip/a.jpg,cat,dog\n").images == ("[2019] trip/a.jpg",)  # not JSON


def read_taglist_text(text: str) -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "taglist.txt"
        path.write_text(text, encoding="utf-8")
        return read_taglist(path)


def test_match_vocabulary_by_exact_name() -> None:
    match = match_vocabulary(["Cat", "dog", "red panda", "unicorn", "dog", "Cat"], ["dog", "cat", "red panda"])
    assert match.classes.tolist() == [1, 2, 4]
    assert match.vocabulary_index.tolist() == [0, 2, 0]
    assert match.unknown == ("Cat", "unicorn")  # each unknown name once


def test_match_vocabulary_ignoring_case_only_when_one_tag_matches() -> None:
    vocabulary = ["dog", "cat", "Boxer", "boxer", "Person"]
    classes = ["Cat", "DOG", "dog", "BOXER", "Boxer", "person", "unicorn"]
    match = match_vocabulary(classes, vocabulary, ignore_case=True)
    assert match.classes.tolist() == [0, 2, 4, 5]
    assert match.vocabulary_index.tolist() == [1, 0, 2, 4]  # Boxer: its exact tag first
    # BOXER could be either tag: not guessed. DOG beside dog would be a second class of one tag,
    # each counting the other's positives as negatives: left out and reported instead.
    assert match.unknown == ("DOG", "BOXER", "unicorn") and match.case_clash == ("DOG", "BOXER")  # said apart
    assert match_vocabulary(["SKY", "Sky"], ["sky"], ignore_case=True).vocabulary_index.tolist() == [0]
    assert match_vocabulary(classes, vocabulary).unknown == ("Cat", "DOG", "BOXER", "person", "unicorn")


def test_one_tag_spelt_two_ways_in_typed_labels_is_one_class() -> None:
    """``person`` on one image and ``Person`` on another: both positives of the tag ``person``."""
    from ramtag.evaluation import merge_case_variants
    from ramtag.groundtruth import GroundTruth

    labels = GroundTruth(("a.jpg", "b.jpg", "c.jpg"), ("Person", "cat", "person", "SKY", "Sky", "BOXER"),
                         ((0, 1), (2,), (3, 4, 5)), "path,tags")
    merged = merge_case_variants(labels, ["person", "cat", "sky", "Boxer", "boxer"])
    assert merged.classes == ("cat", "person", "SKY", "BOXER")  # person's own spelling kept; SKY first
    assert merged.labels == ((0, 1), (1,), (2, 3))
    match = match_vocabulary(merged.classes, ["person", "cat", "sky", "Boxer", "boxer"], ignore_case=True)
    assert match.vocabulary_index.tolist() == [1, 0, 2] and match.unknown == ("BOXER",)  # two tags: not guessed
    assert merge_case_variants(merged, ["person", "cat", "sky"]) is merged  # nothing left to merge


def test_align_benchmark_names_with_run_paths() -> None:
    labelled = ["test/aa", "test/bb", "test/cc", "dd.JPEG", "x/ee", "y/ee"]
    predicted = ["imgs/test/aa.jpg", "bb.jpg", "dd.JPEG", "other.jpg", "p/ee.png", "q/ee.png"]
    result = align(labelled, predicted)
    pairs = dict(zip(result.labelled_rows.tolist(), result.predicted_rows.tolist()))
    assert pairs == {0: 0, 1: 1, 3: 2}  # ee is ambiguous, cc absent
    assert result.missing == ("test/cc",)
    assert result.ambiguous == (("x/ee", ("p/ee.png", "q/ee.png")), ("y/ee", ("p/ee.png", "q/ee.png")))
    assert result.unlabelled == 3


def test_align_names_two_of_the_paths_an_ambiguous_label_matches() -> None:
    predicted = ["d1/beach.jpg", "d2/beach.jpg", "d3/beach.jpg", "d1/dog.jpg"]
    result = align(["beach.jpg", "d3/beach.jpg", "dog", "cat.jpg"], predicted)
    assert dict(zip(result.labelled_rows.tolist(), result.predicted_rows.tolist())) == {1: 2, 2: 3}
    assert result.ambiguous == (("beach.jpg", ("d1/beach.jpg", "d2/beach.jpg")),)  # not counted as missing
    assert result.missing == ("cat.jpg",)
    assert align(["d2/beach.jpg"], predicted).ambiguous == ()  # more of the path: one image


def test_image_finder_finds_benchmark_names(tmp_path: Path) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "aa.jpg").write_bytes(b"")
    (tmp_path / "bb.jpg").write_bytes(b"")
    (tmp_path / "cc.JPEG").write_bytes(b"")
    (tmp_path / "dd.png").mkdir()  # a folder is not an image
    find = ImageFinder(tmp_path)
    assert find("test/aa", ".jpg") == tmp_path / "test" / "aa.jpg"
    assert find("test/bb", ".jpg") == tmp_path / "bb.jpg"  # a flat copy
    assert find("cc.JPEG") == tmp_path / "cc.JPEG"
    assert find("test/zz", ".jpg") is None
    assert find("dd") is None


# --- fetching the benchmark files -------------------------------------------------------------


def _shared_copy(entry: DataFile) -> Path:
    folder = entry.path.split("/")[1]
    return BENCH / {"imagenet_multi": "imagenet_multi", "hico": "hico"}.get(folder, folder) / entry.filename


def test_pinned_sha256_are_those_of_the_official_files() -> None:
    for bench in BENCHMARKS.values():
        for entry in filter(None, (bench.taglist, bench.annotations, bench.descriptions)):
            assert hashlib.sha256(_shared_copy(entry).read_bytes()).hexdigest() == entry.sha256, entry.path
            assert entry.url.startswith(f"https://raw.githubusercontent.com/xinyu1205/recognize-anything/{OFFICIAL_COMMIT}/datasets/")


def test_benchmark_files_are_fetched_checked_and_cached(mirror: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = BENCHMARKS["hico_600"].taglist
    path = benchmark_file(entry)
    assert path.read_bytes() == _shared_copy(entry).read_bytes()
    assert path.parent.name == OFFICIAL_COMMIT
    monkeypatch.setenv("RAMTAG_OFFLINE", "1")
    assert benchmark_file(entry) == path  # cached: no download offline
    path.write_text("tampered\n")
    with pytest.raises(ChecksumError, match="damaged"):
        benchmark_file(entry)


def test_a_wrong_download_is_refused_and_not_cached(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "hico_600_taglist.txt").write_text("not the list\n")
    monkeypatch.setenv("RAMTAG_DATA_URL", wrong.as_uri() + "/{filename}")
    with pytest.raises(ChecksumError, match="not the pinned"):
        benchmark_file(BENCHMARKS["hico_600"].taglist)
    assert not (groundtruth.data_dir() / "hico_600_taglist.txt").exists()


def test_offline_and_not_cached_says_what_to_do() -> None:
    with pytest.raises(ResourceUnavailableError, match="offline"):
        benchmark_file(BENCHMARKS["openimages_common_214"].annotations)


@pytest.mark.parametrize("delimiter", [";", "\t"], ids=["semicolon", "tab"])
def test_a_labels_csv_from_a_european_spreadsheet_or_with_tabs(delimiter: str) -> None:
    # Excel in much of Europe saves CSV with semicolons; it was read as numbered labels and refused.
    text = f"path{delimiter}tags\na.jpg{delimiter}dog|road\n\"b;c.jpg\"{delimiter}cat\nd.jpg{delimiter}\n"
    labels = groundtruth.parse_ground_truth(text)
    assert labels.images == ("a.jpg", "b;c.jpg", "d.jpg") and labels.classes == ("dog", "road", "cat")
    assert labels.labels == ((0, 1), (2,), ())
    with pytest.raises(groundtruth.GroundTruthError, match="looks like a header"):
        groundtruth.parse_ground_truth(f"file{delimiter}labels\na.jpg{delimiter}dog\n")


def test_typed_labels_match_a_class_list_in_any_case() -> None:
    """Without a class list `Cat` was the model's `cat`; with one it was dropped as no class."""
    text = "path,tags\na.jpg,Cat|dog|SKY\nb.jpg,Sky\n"
    labels = groundtruth.parse_ground_truth(text, taglist=["cat", "dog", "Sky", "sky"])
    assert labels.labels == ((0, 1), (2,))  # 'SKY' could be either of two classes: not guessed
    assert labels.unknown_labels == {"SKY": 1}
    official = groundtruth.parse_ground_truth("test/a,Cat,dog\n", taglist=["cat", "dog"], dialect="openimages")
    assert official.labels == ((1,),)  # a benchmark's format is matched exactly, as the official code does
