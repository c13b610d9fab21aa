"""``ramtag eval`` end to end on the tiny RAM++ fixture: run, eval, calibrate, run with the result."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score
from typer.testing import CliRunner, Result

from conftest import OfficialFixture
from ramtag.cli.app import app
from ramtag.groundtruth import read_taglist

runner = CliRunner()
SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TOP3 = ("cat", "car", "sky")  # labelled on the three images scoring highest for them


def invoke(*args: str | Path) -> Result:
    result = runner.invoke(app, [str(arg) for arg in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


@pytest.fixture(scope="module")
def tagged(ramplus_tiny: OfficialFixture, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One `run --all-scores` of the fixture images, and labels made for them."""
    folder = tmp_path_factory.mktemp("eval")
    out = folder / "tags.parquet"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAMTAG_CACHE", str(folder / "cache"))
        patch.setenv("RAMTAG_OFFLINE", "1")
        result = invoke("run", ramplus_tiny.images, "--out", out, "--all-scores", "--workers", "0",
                        "--batch-size", "9", *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out).sort_values("path").reset_index(drop=True)
    vocabulary = read_taglist(ramplus_tiny.tags)
    scores = np.stack(frame["all_scores"].to_numpy()).astype(np.float32)
    labels: dict[str, list[str]] = {path: [] for path in frame["path"]}
    for tag in TOP3:
        for row in np.argsort(-scores[:, vocabulary.index(tag)])[:3]:
            labels[frame["path"][row]].append(tag)
    labels[frame["path"][0]] += ["dog", "unicorn"]  # dog once; unicorn is no tag of the model
    labels[frame["path"][4]].append("dog")
    gt = folder / "labels.csv"
    gt.write_text(
        "path,tags\n" + "".join(f"{p},{'|'.join(t)}\n" for p, t in labels.items()) + "not_tagged.jpg,cat\n",
        encoding="utf-8",
    )
    taglist = folder / "taglist.txt"
    taglist.write_text("cat\ncar\nsky\ndog\nnight\nunicorn\n", encoding="utf-8")  # night: no positive
    return {"out": out, "frame": frame, "scores": scores, "vocabulary": vocabulary, "labels": labels,
            "gt": gt, "taglist": taglist, "folder": folder}


def targets_of(tagged: dict, tag: str) -> np.ndarray:
    return np.array([tag in tagged["labels"][p] for p in tagged["frame"]["path"]])


def eval_json(*args: str | Path) -> dict:
    result = invoke("eval", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_eval_matches_independent_numbers(tagged: dict, ramplus_tiny: OfficialFixture) -> None:
    report = eval_json("--gt", tagged["gt"], "--pred", tagged["out"], "--gt-classes", tagged["taglist"])
    vocabulary, scores = tagged["vocabulary"], tagged["scores"]
    classes = ["cat", "car", "sky", "dog", "night"]
    aps = [
        average_precision_score(targets_of(tagged, tag), scores[:, vocabulary.index(tag)]) if targets_of(tagged, tag).any() else 0.0
        for tag in classes
    ]
    assert report["mAP"] == pytest.approx(np.mean(aps), abs=1e-6)
    assert report["mAP_positive"] == pytest.approx(np.mean(aps[:4]), abs=1e-6)
    thresholds = np.loadtxt(ramplus_tiny.thresholds, dtype=np.float32)
    tp = fp = fn = 0
    precisions, recalls = [], []
    for tag in classes:
        k = vocabulary.index(tag)
        predicted, truth = scores[:, k] > thresholds[k], targets_of(tagged, tag)
        t, f, n = (predicted & truth).sum(), (predicted & ~truth).sum(), (~predicted & truth).sum()
        tp, fp, fn = tp + t, fp + f, fn + n
        precisions.append(t / (t + f) if t + f else 0.0)
        recalls.append(t / (t + n) if t + n else 0.0)
    assert report["CP"] == pytest.approx(np.mean(precisions))
    assert report["CR"] == pytest.approx(np.mean(recalls))
    assert report["OP"] == pytest.approx(tp / (tp + fp))
    assert report["OR"] == pytest.approx(tp / (tp + fn))
    for key in ("CF1", "OF1", "mAP", "mAP_positive"):
        assert 0.0 <= report[key] <= 1.0
    assert report["counts"] == {
        "images_labelled": 10, "images_evaluated": 9, "images_without_prediction": 1, "images_ambiguous": 0,
        "images_failed": 0,
        "predictions_without_labels": 0, "repeated_label_lines": 0, "classes": 5, "classes_with_positives": 4,
        "classes_without_positives": 1, "classes_unknown_to_model": 1, "labels_naming_no_class": 0,
    }
    assert report["unknown_classes"] == ["unicorn"]
    assert report["thresholds"] == "the run's"
    import hashlib

    sha = hashlib.sha256(ramplus_tiny.checkpoint.read_bytes()).hexdigest()
    assert report["scores"] == {"model_kind": "ram_plus", "checkpoint_sha256": sha, "precision": "fp32",
                                "bf16_recipe": None}  # what made the scores, so a report says it
    assert [row["tag"] for row in report["per_class"]] == classes
    assert report["per_class"][0]["AP"] == pytest.approx(1.0)  # cat labelled on its top three


def test_scores_made_without_per_tag_thresholds_are_said_to_be_at_the_default(
    tagged: dict, ramplus_tiny: OfficialFixture, tmp_path: Path
) -> None:
    """A tag list without thresholds runs at 0.68 for every tag (run warns); eval says its CP/CR/OP/OR
    are at 0.68 too, never silently."""
    out = tmp_path / "default.parquet"
    made = invoke("run", ramplus_tiny.images, "--out", out, "--all-scores", "--workers", "0",
                  "--checkpoint", ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags)
    assert made.exit_code == 0, made.output
    result = invoke("eval", "--gt", tagged["gt"], "--pred", out, "--gt-classes", tagged["taglist"])
    assert result.exit_code == 0, result.output
    assert "warning: the run that made the scores used 0.68 for every tag, so CP, CR, OP and OR are at it" in result.stderr
    chosen = invoke("eval", "--gt", tagged["gt"], "--pred", out, "--gt-classes", tagged["taglist"],
                    "--thresholds", ramplus_tiny.thresholds)
    assert "for every tag" not in chosen.stderr  # thresholds chosen: nothing to say


def test_table_warnings_and_per_class_csv(tagged: dict, ramplus_tiny: OfficialFixture) -> None:
    per_class = tagged["folder"] / "ap.csv"
    result = invoke("eval", "--gt", tagged["gt"], "--pred", tagged["out"], "--per-class", per_class)
    assert result.exit_code == 0, result.output
    assert "mAP" in result.stdout and "OF1" in result.stdout
    assert "scores: ram_plus fp32, checkpoint sha256 " in result.stdout
    assert "unicorn" in result.stderr and "1 labelled image without scores" in result.stderr
    rows = pd.read_csv(per_class)
    assert list(rows.columns) == ["tag", "class_index", "vocabulary_index", "positives", "AP", "precision", "recall", "threshold"]
    assert set(rows["tag"]) == {"cat", "car", "sky", "dog"}  # no taglist: the labels' known tags
    official = {float(line) for line in ramplus_tiny.thresholds.read_text().split()}
    assert set(rows["threshold"]) <= official, rows["threshold"]  # 0.55 as written, not 0.550000011920929


def test_threshold_changes_precision_not_ap(tagged: dict) -> None:
    base = eval_json("--gt", tagged["gt"], "--pred", tagged["out"])
    low = eval_json("--gt", tagged["gt"], "--pred", tagged["out"], "--threshold", "0.0")
    assert low["mAP"] == base["mAP"]
    assert low["OR"] == pytest.approx(1.0) and low["thresholds"] == "0 for every tag"


def test_calibrate_then_run_with_the_calibrated_thresholds(tagged: dict, ramplus_tiny: OfficialFixture) -> None:
    calibrated = tagged["folder"] / "calibrated.txt"
    report = eval_json("--gt", tagged["gt"], "--pred", tagged["out"], "--calibrate", calibrated)
    assert report["calibration"]["calibrated"] == 4 and report["calibration"]["tags"] == 16
    values = np.loadtxt(calibrated, dtype=np.float32)
    previous = np.loadtxt(ramplus_tiny.thresholds, dtype=np.float32)
    vocabulary, scores = tagged["vocabulary"], tagged["scores"]
    for k, tag in enumerate(vocabulary):
        if tag in TOP3:  # between the third and fourth highest score: F1 = 1
            ranked = np.sort(scores[:, k])[::-1]
            assert ranked[3] <= values[k] < ranked[2]
        elif tag != "dog":
            assert values[k] == previous[k]  # no positives: unchanged

    out = tagged["folder"] / "recalibrated.parquet"
    result = invoke("run", ramplus_tiny.images, "--out", out, "--workers", "0", "--batch-size", "9",
                    "--checkpoint", ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags,
                    "--thresholds", calibrated)
    assert result.exit_code == 0, result.output
    before = dict(zip(tagged["frame"]["path"], tagged["frame"]["tags"]))
    for path, tags in zip(*pd.read_parquet(out)[["path", "tags"]].to_numpy().T):
        for tag in TOP3:  # now tagged exactly where labelled
            assert (tag in tags) == (tag in tagged["labels"][path]), (path, tag)
        untouched = set(tags) - {*TOP3, "dog"}
        assert untouched == set(before[path]) - {*TOP3, "dog"}

    again = eval_json("--gt", tagged["gt"], "--pred", tagged["out"], "--thresholds", calibrated)
    by_tag = {row["tag"]: row for row in again["per_class"]}
    for tag in TOP3:
        assert by_tag[tag]["precision"] == 1.0 and by_tag[tag]["recall"] == 1.0


def test_thresholds_calibrated_on_an_only_tags_run_go_to_those_tags(
    tagged: dict, ramplus_tiny: OfficialFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval --calibrate of an --only-tags output lists its tags alone, in their order: run with the
    same --only-tags takes them as theirs (by position in the whole list they were misread)."""
    only = ("sky", "cat")  # not in tag-list order
    out = tmp_path / "only.parquet"
    common = ["--workers", "0", "--batch-size", "9", *ramplus_tiny.cli_args(), "--only-tags", ",".join(only)]
    assert invoke("run", ramplus_tiny.images, "--out", out, "--all-scores", *common).exit_code == 0
    calibrated = tmp_path / "only.txt"
    eval_json("--gt", tagged["gt"], "--pred", out, "--calibrate", calibrated)
    lines = [line.split("\t") for line in calibrated.read_text(encoding="utf-8").splitlines()]
    assert [name for _, name in lines] == list(only)  # each line names its tag
    values = {name: np.float32(value) for value, name in lines}
    assert values["cat"] != values["sky"]
    for order in (only, only[::-1]):  # applied by name: the same tags named in another order too
        again = tmp_path / f"again_{order[0]}.parquet"
        result = invoke("run", ramplus_tiny.images, "--out", again, "--workers", "0", "--checkpoint",
                        ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags, "--thresholds", calibrated,
                        "--only-tags", ",".join(order))
        assert result.exit_code == 0, result.output
        assert "thresholds for the 16 tags" not in result.stderr and "warning" not in result.stderr
        recorded = json.loads(pq_metadata(again))
        assert recorded["vocabulary"] == list(order)
        assert np.allclose(recorded["thresholds"], [values[name] for name in order])
    typed = tmp_path / "typed.csv"  # a cell joined with commas, and classes this run did not score
    typed.write_text("path,tags\ndemo2.jpg,sky\ndemo3.jpg,\"dog, car\"\ndemo4.jpg,dog\n", encoding="utf-8")
    said = invoke("eval", "--gt", typed, "--pred", out)
    assert ("2 classes were left out, not among the tags these scores have (from a run with --only-tags or --tags): "
            "'dog, car', 'dog' (one label 'dog, car': the tags of a labels cell are joined by '|')") in " ".join(said.stderr.split())
    typed.write_text("path,tags\ndemo3.jpg,\"dog, car\"\n", encoding="utf-8")
    said = invoke("eval", "--gt", typed, "--pred", out)
    assert said.exit_code == 1 and f"is among the tags scored in {out}" in said.stderr and "joined by '|'" in said.stderr
    other = tmp_path / "other.txt"  # named for other tags: said, not silently the run's thresholds
    other.write_text("0.5\tcar\n0.4\tsky\n", encoding="utf-8")
    said = invoke("eval", "--gt", tagged["gt"], "--pred", out, "--thresholds", other)
    assert said.exit_code == 0 and "other.txt has no threshold for 1 of the 2 tags" in said.stderr
    assert "other.txt: 1 of its tags is not scored in this run (e.g. 'car'), so its threshold is not used" in " ".join(
        said.stderr.split())
    other.write_text("0.5\tcar\n", encoding="utf-8")
    said = invoke("eval", "--gt", tagged["gt"], "--pred", out, "--thresholds", other)
    assert said.exit_code == 2 and "names none of the tags of these scores" in said.stderr
    again = eval_json("--gt", tagged["gt"], "--pred", out, "--thresholds", calibrated)  # eval reads it by name too
    assert {row["tag"]: np.float32(row["threshold"]) for row in again["per_class"] if row["tag"] in only} == values
    import warnings

    from ramtag import load_tagger

    monkeypatch.chdir(tmp_path)  # the same through the Python API, the file named as written
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        tagger = load_tagger(checkpoint=ramplus_tiny.checkpoint, tag_list=ramplus_tiny.tags, thresholds="./only.txt",
                             only_tags=["cat", "dog"], device="cpu")
    assert np.allclose(tagger.vocabulary.thresholds, [values["cat"], 0.68])  # dog: the default (no other file given)
    assert [str(w.message) for w in said] == [
        "only.txt has no threshold for 1 of the 2 tags of this run (e.g. 'dog'): they keep 0.68",
        "only.txt: 1 of its tags is not scored in this run (e.g. 'sky'), so its threshold is not used",
    ]


def pq_metadata(path: Path) -> str:
    import pyarrow.parquet as pq

    from ramtag.outputs import METADATA_KEY

    return pq.read_schema(path).metadata[METADATA_KEY.encode()].decode()


def test_calibrate_for_a_target_precision(tagged: dict) -> None:
    strict = tagged["folder"] / "strict.txt"
    report = eval_json("--gt", tagged["gt"], "--pred", tagged["out"], "--calibrate", strict,
                       "--target-precision", "1.0")
    assert report["calibration"]["rule"] == "lowest threshold with precision >= 1"
    vocabulary, scores = tagged["vocabulary"], tagged["scores"]
    values = np.loadtxt(strict, dtype=np.float32)
    for tag in (*TOP3, "dog"):
        k = vocabulary.index(tag)
        truth = targets_of(tagged, tag)[np.argsort(-scores[:, k])]
        leading = int(np.argmin(truth)) if not truth.all() else len(truth)  # positives ranked first
        if leading:
            assert (scores[:, k] > values[k]).sum() == leading, tag  # the longest run of positives at the top: precision 1
        else:
            assert values[k] == np.loadtxt(SHARED / "fixtures/official_ramplus_tiny/thresholds.txt")[k].astype(np.float32)
    assert report["calibration"]["calibrated"] + report["calibration"]["kept_unreachable"] == 4


def test_images_mode_scores_once_then_reuses(tagged: dict, ramplus_tiny: OfficialFixture) -> None:
    args = ["--gt", tagged["gt"], "--images", ramplus_tiny.images, "--checkpoint", ramplus_tiny.checkpoint,
            "--tag-list", ramplus_tiny.tags, "--workers", "0", "--batch-size", "9"]
    first = invoke("eval", *args, "--json")
    assert first.exit_code == 0, first.output
    assert "9 images scored" in first.stderr and "1 labelled image is not under" in first.stderr
    assert "every tag uses the threshold" not in first.stderr  # eval's thresholds are its own
    expected = eval_json("--gt", tagged["gt"], "--pred", tagged["out"])
    got = json.loads(first.stdout)
    assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
    # The default thresholds are the official list's 0.68 here (no --thresholds given to the model).
    second = invoke("eval", *args, "--json", "--threshold", "0.5")
    assert second.exit_code == 0, second.output
    assert "scores of 9 images reused" in second.stderr
    assert json.loads(second.stdout)["mAP"] == got["mAP"]
    unturned = invoke("eval", *args, "--json", "--ignore-orientation")  # other readings: other scores, kept apart
    assert unturned.exit_code == 0 and "9 images scored" in unturned.stderr, unturned.output
    assert "scores of 9 images reused" in invoke("eval", *args, "--json").stderr
    refused = invoke("eval", "--gt", tagged["gt"], "--pred", tagged["out"], "--ignore-orientation")
    assert refused.exit_code == 2 and "--ignore-orientation is how --images are read" in refused.stderr


def test_images_mode_scores_changed_and_new_images_again(tmp_path: Path, ramplus_tiny: OfficialFixture) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    for name in ("demo2.jpg", "demo3.jpg", "demo4.jpg", "synth_cmyk.jpg"):
        shutil.copy(ramplus_tiny.images / name, images / name)
    gt = tmp_path / "labels.csv"
    gt.write_text("path,tags\ndemo2.jpg,car|sky\ndemo3.jpg,flower\ndemo4.jpg,dog\nsynth_cmyk.jpg,dog|car\n")
    kept = tmp_path / "scores.parquet"
    args = ["--gt", gt, "--images", images, "--scores", kept, "--checkpoint", ramplus_tiny.checkpoint,
            "--tag-list", ramplus_tiny.tags, "--workers", "0", "--json"]

    def scores() -> dict[str, np.ndarray]:
        frame = pd.read_parquet(kept)
        return {path: np.asarray(row, dtype=np.float32) for path, row in zip(frame["path"], frame["all_scores"])}

    first = invoke("eval", *args)
    assert first.exit_code == 0, first.output
    assert "4 images scored" in first.stderr
    before = scores()

    shutil.copy(ramplus_tiny.images / "tagging_results.jpg", images / "demo2.jpg")  # another photo, same name
    changed = invoke("eval", *args)
    assert changed.exit_code == 0, changed.output
    assert "1 image scored (1 changed); scores of 3 images reused" in changed.stderr
    after = scores()
    assert not np.allclose(after["demo2.jpg"], before["demo2.jpg"], atol=1e-3)  # the old photo's scores are gone
    for name in ("demo3.jpg", "demo4.jpg", "synth_cmyk.jpg"):
        np.testing.assert_array_equal(after[name], before[name])  # reused as they were
    rescored = invoke("eval", *args, "--rescore")
    assert "4 images scored" in rescored.stderr
    np.testing.assert_allclose(scores()["demo2.jpg"], after["demo2.jpg"], atol=1e-5)

    shutil.copy(ramplus_tiny.images / "synth_rgba.png", images)
    with gt.open("a") as labels:
        labels.write("synth_rgba.png,cat\n")
    added = invoke("eval", *args)
    assert "1 image scored (1 new); scores of 4 images reused" in added.stderr
    again = invoke("eval", *args)
    assert _said(again) == [f"scores of 5 images reused from {kept}"]
    assert json.loads(again.stdout)["mAP"] == json.loads(added.stdout)["mAP"]


def _two_labelled_photos(tmp_path: Path, fixture: OfficialFixture, first_tags: str) -> tuple[Path, Path]:
    """A folder of two of the fixture's photos, and a labels CSV for them."""
    images = tmp_path / "photos"
    images.mkdir()
    for name in ("demo2.jpg", "demo3.jpg"):
        shutil.copy(fixture.images / name, images / name)
    gt = tmp_path / "labels.csv"
    gt.write_text(f"path,tags\ndemo2.jpg,{first_tags}\ndemo3.jpg,flower\n")
    return images, gt


def _said(result: Result) -> list[str]:
    """stderr without the warning that a tag list without thresholds puts the metrics at 0.68."""
    return [line for line in result.stderr.splitlines() if not line.startswith("warning: the run that made the scores")]


def test_kept_scores_of_another_checkpoint_are_not_reused(
    tmp_path: Path, ramplus_tiny: OfficialFixture, ram_tiny: OfficialFixture
) -> None:
    # Nothing changed in the photos, but the model did: the kept scores are the other model's.
    images, gt = _two_labelled_photos(tmp_path, ramplus_tiny, "car|sky")
    kept = tmp_path / "scores.parquet"
    common = ["--gt", gt, "--images", images, "--scores", kept, "--workers", "0", "--json"]
    first = invoke("eval", *common, "--checkpoint", ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags)
    assert first.exit_code == 0, first.output
    written = kept.read_bytes()

    other = invoke("eval", *common, "--checkpoint", ram_tiny.checkpoint, "--tag-list", ram_tiny.tags)
    assert other.exit_code != 0
    assert f"{kept} holds scores made with other settings" in other.stderr and "--rescore" in other.stderr
    assert kept.read_bytes() == written  # refused before anything was written
    same = invoke("eval", *common, "--checkpoint", ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags)
    assert _said(same) == [f"scores of 2 images reused from {kept}"]
    released = invoke("eval", *common, "--tag-list", ramplus_tiny.tags)  # the release: not downloaded here
    assert released.exit_code != 0 and "reused" not in released.stderr
    assert "these files are not cached" in released.stderr
    official = invoke("eval", *common, "--checkpoint", ramplus_tiny.checkpoint, "--rescore")  # the official lists
    assert official.exit_code != 0 and "Chinese tag list" in official.stderr and "or pass --tag-list PATH" in official.stderr
    assert "--tag-list-zh" not in official.stderr and "--thresholds PATH" not in official.stderr  # eval has neither
    replaced = invoke("eval", *common, "--checkpoint", ram_tiny.checkpoint, "--tag-list", ram_tiny.tags, "--rescore")
    assert replaced.exit_code == 0, replaced.output
    assert "2 images scored" in replaced.stderr


def test_kept_scores_are_told_apart_by_the_checkpoints_bytes_not_its_path(
    tmp_path: Path, ramplus_tiny: OfficialFixture, ram_tiny: OfficialFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same relative name in two folders names two models (recorded as typed: "w.pth").
    images, gt = _two_labelled_photos(tmp_path, ramplus_tiny, "car")
    for folder, fixture in (("a", ramplus_tiny), ("b", ram_tiny)):
        (tmp_path / folder).mkdir()
        shutil.copy(fixture.checkpoint, tmp_path / folder / "w.pth")
        shutil.copy(fixture.tags, tmp_path / folder / "tags.txt")
    common = ["--gt", gt, "--images", images, "--scores", tmp_path / "kept.parquet", "--workers", "0", "--json",
              "--checkpoint", "w.pth", "--tag-list", "tags.txt"]
    monkeypatch.chdir(tmp_path / "a")
    assert invoke("eval", *common).exit_code == 0
    monkeypatch.chdir(tmp_path / "b")
    other = invoke("eval", *common)
    assert other.exit_code != 0 and "holds scores made with other settings" in other.stderr


def test_a_labels_csv_without_its_header_says_so(tagged: dict, tmp_path: Path) -> None:
    """Read as an OpenImages-style file, 'sky|grass' became one class: 'none of the classes is a tag'."""
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"{path},sky|dog\n" for path in tagged["frame"]["path"][:3]), encoding="utf-8")
    result = invoke("eval", "--gt", labels, "--pred", tagged["out"])
    assert result.exit_code == 1
    assert "'sky|dog' was read as one class: a path,tags file needs its header line, path,tags" in result.stderr


def test_a_label_naming_several_scored_images_says_which(tagged: dict, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ramtag.evaluation import evaluate
    from ramtag.groundtruth import read_ground_truth

    table = pq.read_table(tagged["out"])
    paths = [f"d{row}/beach.jpg" if row < 2 else f"d1/{path}" for row, path in enumerate(table.column("path").to_pylist())]
    pred = tmp_path / "two_folders.parquet"
    pq.write_table(table.set_column(table.schema.get_field_index("path"), "path", pa.array(paths)), pred)
    alone = tmp_path / "alone.csv"
    alone.write_text("path,tags\nbeach.jpg,sky\n", encoding="utf-8")
    refused = invoke("eval", "--gt", alone, "--pred", pred)
    assert refused.exit_code == 1
    assert ("the label 'beach.jpg' matches several scored images ('d0/beach.jpg', 'd1/beach.jpg'); "
            "give more of its path in the labels, such as 'd0/beach.jpg'") in refused.stderr
    assert "are the labels for these images" not in refused.stderr

    dog = paths[2].rpartition("/")[2]
    mixed = tmp_path / "mixed.csv"
    mixed.write_text(f"path,tags\nbeach.jpg,sky\n{dog},Dog|SKY|unicorn\nnone.jpg,sky\n", encoding="utf-8")
    result = invoke("eval", "--gt", mixed, "--pred", pred, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    counts = report["counts"]
    assert (counts["images_evaluated"], counts["images_without_prediction"], counts["images_ambiguous"]) == (1, 1, 1)
    assert report["images_ambiguous_examples"] == [{"label": "beach.jpg", "matches": ["d0/beach.jpg", "d1/beach.jpg"]}]
    assert "1 labelled image was left out: the label 'beach.jpg' matches several" in result.stderr
    assert "1 labelled image without scores (e.g. none.jpg)" in result.stderr
    vocabulary = tagged["vocabulary"]
    by_tag = {row["tag"]: row["vocabulary_index"] for row in report["per_class"]}
    assert by_tag == {"sky": vocabulary.index("sky"), "Dog": vocabulary.index("dog")}
    assert report["unknown_classes"] == ["unicorn"]  # SKY is sky's class, not a second one
    exact = evaluate(read_ground_truth(mixed), pred, ignore_case=False)  # as a benchmark is scored
    assert exact.unknown_classes == ["Dog", "SKY", "unicorn"]


def test_benchmark_with_the_images_of_a_few_lines(mirror: Path, tmp_path: Path, ramplus_tiny: OfficialFixture) -> None:
    images = tmp_path / "openimages"
    (images / "test").mkdir(parents=True)
    picked = {"0000c64e1253d68f": "demo2.jpg", "0002ab0af02e4a77": "demo3.jpg",
              "000ccf1d00f7f1cd": "demo4.jpg", "004421e64e1be85b": "synth_cmyk.jpg"}  # car, flower, pet+dog, pet+dog+car
    for name, source in picked.items():
        shutil.copy(ramplus_tiny.images / source, images / "test" / f"{name}.jpg")
    result = invoke("eval", "--benchmark", "openimages_common_214", "--images", images, "--json",
                    "--checkpoint", ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags, "--workers", "0")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    counts = report["counts"]
    assert counts["images_labelled"] == 57224 and counts["images_evaluated"] == 4
    assert counts["images_without_prediction"] == 57220
    assert counts["classes"] == 4 and counts["classes_unknown_to_model"] == 210  # cat dog car flower
    assert {row["tag"]: row["positives"] for row in report["per_class"]} == {"car": 2, "cat": 0, "dog": 2, "flower": 1}
    assert counts["classes_without_positives"] == 1


def test_rare_200_needs_open_set_support(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ramtag

    monkeypatch.setitem(sys.modules, "ramtag.openset", None)  # importing it fails
    monkeypatch.delattr(ramtag, "openset", raising=False)
    result = invoke("eval", "--benchmark", "openimages_rare_200", "--images", tmp_path)
    assert result.exit_code == 1
    assert "open-set support" in result.stderr and "Traceback" not in result.output


def test_rare_200_with_open_set_tags(mirror: Path, tmp_path: Path, ramplus_tiny: OfficialFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from ramtag import openset
    from ramtag.describe.files import LabelEmbeddings

    asked = []

    def embed(descriptions: dict[str, list[str]], text_encoder: str, *, device: str = "cpu") -> LabelEmbeddings:  # the CLIP text tower is open-set's to test
        asked.append((len(descriptions), text_encoder))
        vectors = torch.nn.functional.normalize(torch.randn(len(descriptions), 51, 512), dim=-1)
        return LabelEmbeddings(tuple(descriptions), vectors, text_encoder)

    monkeypatch.setattr(openset, "embed_cached", embed)
    images = tmp_path / "openimages" / "test"
    images.mkdir(parents=True)
    for name, source in {"0000c64e1253d68f": "demo2.jpg", "0002cc8afaf1b611": "demo3.jpg"}.items():
        shutil.copy(ramplus_tiny.images / source, images / f"{name}.jpg")
    result = invoke("eval", "--benchmark", "openimages_rare_200", "--images", images.parent, "--json",
                    "--checkpoint", ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags, "--workers", "0",
                    "--text-encoder", "my/clip")
    assert result.exit_code == 0, result.output
    assert asked == [(200, "my/clip")]  # the official descriptions, fetched and read
    report = json.loads(result.stdout)
    assert report["counts"]["classes"] == 200 and report["counts"]["classes_unknown_to_model"] == 0
    assert report["counts"]["images_evaluated"] == 2
    assert report["thresholds"] == "0.5 for every tag"
    positives = {row["tag"]: row["positives"] for row in report["per_class"] if row["positives"]}
    assert positives == {"Auto racing": 1, "Residential area": 1}


def test_usage_errors(tagged: dict, tmp_path: Path) -> None:
    both = invoke("eval", "--gt", tagged["gt"], "--benchmark", "hico_600", "--pred", tagged["out"])
    assert both.exit_code == 2 and "--gt FILE or --benchmark NAME" in both.stderr
    plain = tmp_path / "plain.parquet"
    tagged["frame"].drop(columns=["all_scores"]).to_parquet(plain)
    missing = invoke("eval", "--gt", tagged["gt"], "--pred", plain)
    assert missing.exit_code == 2 and "--all-scores" in missing.stderr
    other = tmp_path / "other.csv"
    other.write_text("path,tags\nelsewhere/x.jpg,cat\n", encoding="utf-8")
    unmatched = invoke("eval", "--gt", other, "--pred", tagged["out"])
    assert unmatched.exit_code == 1 and "no labelled image has scores" in unmatched.stderr
    alone = invoke("eval", "--gt", tagged["gt"], "--pred", tagged["out"], "--target-precision", "0.9")
    assert alone.exit_code == 2 and "--calibrate" in alone.stderr


def test_report_files_never_replace_what_the_command_reads_or_another_kind_of_file(tagged: dict, tmp_path: Path) -> None:
    """A typo in --calibrate or --per-class replaced hand-made labels, or a Parquet of --all-scores,
    without a word; a file of their own kind is still replaced (calibrating again and again)."""
    gt = tmp_path / "labels.csv"
    gt.write_bytes(tagged["gt"].read_bytes())
    pred = tmp_path / "tags.parquet"
    pred.write_bytes(tagged["out"].read_bytes())
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n", encoding="utf-8")
    for option, dest, said in [("--calibrate", gt, "is also this command's --gt"),
                               ("--per-class", pred, "is also this command's --pred"),
                               ("--calibrate", notes, "exists and is not a thresholds file"),
                               ("--per-class", notes, "exists and is not a per-class CSV")]:
        result = invoke("eval", "--gt", gt, "--pred", pred, option, dest)
        assert result.exit_code == 2 and said in result.stderr, result.stderr
    assert gt.read_bytes() == tagged["gt"].read_bytes() and pred.read_bytes() == tagged["out"].read_bytes()
    assert notes.read_text(encoding="utf-8") == "my notes\n"
    same = tmp_path / "same.txt"
    both = invoke("eval", "--gt", gt, "--pred", pred, "--calibrate", same, "--per-class", same)
    assert both.exit_code == 2 and "--per-class and --calibrate name one file" in both.stderr
    for _ in range(2):  # the second time over the files the first wrote
        result = invoke("eval", "--gt", gt, "--pred", pred, "--calibrate", tmp_path / "t.txt",
                        "--per-class", tmp_path / "ap.csv")
        assert result.exit_code == 0, result.output
    (tmp_path / "empty.csv").touch()  # as mktemp leaves it
    assert invoke("eval", "--gt", gt, "--pred", pred, "--per-class", tmp_path / "empty.csv").exit_code == 0
    scores = tmp_path / "scores.out"  # not there yet: the command writes it before the report would
    result = invoke("eval", "--gt", gt, "--images", tmp_path, "--scores", scores, "--per-class", scores)
    assert result.exit_code == 2 and "is also this command's --scores" in result.stderr and not scores.exists()


def test_tags_in_cells_of_their_own_are_refused(tagged: dict, tmp_path: Path) -> None:
    """path,tags then a.jpg,dog,grass counted dog alone, silently: wrong metrics."""
    gt = tmp_path / "labels.csv"
    gt.write_text("path,tags\na.jpg,dog,grass\nb.jpg,cat,\n", encoding="utf-8")
    result = invoke("eval", "--gt", gt, "--pred", tagged["out"])
    assert result.exit_code != 0 and "labels.csv:2: 3 cells under a header of 2: join a line's tags with '|'" in (
        result.stderr), result.stderr


def test_per_class_csv_tag_names_start_no_formula(tmp_path: Path) -> None:
    from ramtag.evaluation import write_per_class

    dest = tmp_path / "ap.csv"
    row = {"class_index": 0, "vocabulary_index": 3, "positives": 2, "AP": 0.5, "precision": 1.0, "recall": 0.5,
           "threshold": 0.68}
    write_per_class(dest, [{"tag": "=1+1", **row}, {"tag": "-minus", **row}, {"tag": "dog", **row}])
    lines = dest.read_text().splitlines()
    assert lines[1:] == [f"{tag},0,3,2,0.5,1.0,0.5,0.68" for tag in ("'=1+1", "'-minus", "dog")]


def test_a_cache_made_before_scores_knew_their_files_is_made_again(
    tmp_path: Path, ramplus_tiny: OfficialFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setenv("RAMTAG_CACHE", str(tmp_path / "cache"))
    images, gt = _two_labelled_photos(tmp_path, ramplus_tiny, "car")
    args = ["--gt", gt, "--images", images, "--checkpoint", ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags,
            "--workers", "0"]
    assert "2 images scored" in invoke("eval", *args).stderr
    [cache] = (tmp_path / "cache" / "eval").glob("*.parquet")
    table = pq.read_table(cache)
    pq.write_table(table.drop_columns(["file_size", "file_modified"]), cache)  # as an older ramtag wrote it
    shutil.copy(ramplus_tiny.images / "tagging_results.jpg", images / "demo2.jpg")  # no size or time to tell by
    again = invoke("eval", *args)
    assert again.exit_code == 0, again.output
    assert "2 images scored" in again.stderr
    assert "file_size" in pq.read_schema(cache).names


def test_a_labelled_image_that_cannot_be_read_is_named_with_why(tmp_path: Path, ramplus_tiny: OfficialFixture) -> None:
    images = tmp_path / "photos"
    images.mkdir()
    shutil.copy(ramplus_tiny.images / "demo2.jpg", images / "demo2.jpg")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    gt = tmp_path / "labels.csv"
    gt.write_text("path,tags\ndemo2.jpg,car\nbroken.jpg,dog\n")
    result = invoke("eval", "--gt", gt, "--images", images, "--scores", tmp_path / "s.parquet", "--checkpoint",
                    ramplus_tiny.checkpoint, "--tag-list", ramplus_tiny.tags, "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "warning: 1 labelled image was left out, the run could not read it (e.g. broken.jpg: " in result.stderr
    assert "scored again once the file changes, or with --rescore" in result.stderr
    assert "1 image evaluated of 2 labelled" in result.stdout  # one, not "1 images"
