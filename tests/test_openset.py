"""Open-set vocabularies into the tagger: same scores as the embeddings put into the model by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner, Result

from conftest import SHARED, OfficialFixture
from ramtag import load_tagger
from ramtag.describe import encoder as encoder_module
from ramtag.describe.encoder import TextEncoder
from ramtag.describe.files import embed_descriptions, read_descriptions, write_embeddings
from ramtag.errors import UsageError, VocabularyError
from ramtag.tagger import Tagger
from test_describe_encoder import make_tiny_clip

# ramtag.openset is imported inside the tests, not at collection: test_cli_eval checks what happens
# when that module is missing, which an import here would defeat.

RARE_200 = SHARED / "ram_data" / "benchmarks" / "openimages_rare_200" / "openimages_rare_200_llm_tag_descriptions.json"


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def image_batch(tagger: Tagger, fixture: OfficialFixture) -> torch.Tensor:
    from ramtag.inputs import decode_image

    names = ["demo2.jpg", "synth_gray.png"]  # few images: the tiny model is still a 384 px Swin
    return torch.stack([tagger.preprocess(decode_image(fixture.images / name)) for name in names])


def by_hand(tagger: Tagger, batch: torch.Tensor, label_embed: torch.Tensor | None) -> np.ndarray:
    with torch.inference_mode():
        return torch.sigmoid(tagger.model(batch, label_embed)).numpy()


def load_open_set(*args: Any, **kwargs: Any) -> Any:
    from ramtag.openset import load_open_set

    return load_open_set(*args, **kwargs)


def open_set_tagger(*args: Any, **kwargs: Any) -> Any:
    from ramtag.openset import open_set_tagger

    return open_set_tagger(*args, **kwargs)


def test_comma_list_goes_through_templates_and_is_cached(tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ramtag.openset import parse_tag_list

    assert parse_tag_list(" cat wearing a hat, red umbrella ,, ") == ["cat wearing a hat", "red umbrella"]
    open_set = load_open_set("cat wearing a hat,red umbrella", text_encoder=str(tiny_clip))
    assert open_set.tags == ("cat wearing a hat", "red umbrella")
    assert open_set.embedded.embeddings.shape == (2, 51, 512)
    assert torch.allclose(open_set.embedded.embeddings.norm(dim=-1), torch.ones(2, 51), atol=1e-5)
    assert open_set.embedded.text_encoder == str(tiny_clip)

    def no_encoder(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached embeddings should have been used")

    monkeypatch.setattr(encoder_module, "TextEncoder", no_encoder)
    again = load_open_set("cat wearing a hat,red umbrella", text_encoder=str(tiny_clip))
    assert torch.equal(again.embedded.embeddings, open_set.embedded.embeddings)


@pytest.mark.parametrize("vocab", ["open", "both"])
def test_tagger_scores_equal_the_model_by_hand(vocab: str, tiny_tagger: Tagger, ramplus_tiny: OfficialFixture, tiny_clip: Path) -> None:
    open_set = load_open_set("cat wearing a hat,red umbrella,blue bicycle", text_encoder=str(tiny_clip))
    tagger = open_set_tagger(tiny_tagger, open_set, vocab=vocab)
    batch = image_batch(tagger, ramplus_tiny)
    scores = tagger.scores(batch)
    embed = open_set.embedded.embeddings
    if vocab == "open":
        expected = by_hand(tagger, batch, embed)
        assert tagger.vocabulary.tags == open_set.tags
    else:
        everything = torch.cat([tagger.model.label_embed, embed])
        expected = by_hand(tagger, batch, everything)
        assert tagger.vocabulary.tags[-3:] == open_set.tags and len(tagger.vocabulary) == 16 + 3
        # The built-in scores are those of the model's own table.
        with torch.inference_mode():
            builtin = torch.sigmoid(tagger.model.forward_head(tagger.model.forward_features(batch)))
        np.testing.assert_allclose(scores[:, :16], builtin.numpy(), rtol=0, atol=1e-5)
    # by hand is another order of the same fp32 arithmetic (and other matrix shapes): within 1e-5
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)
    from ramtag.openset import OPEN_SET_THRESHOLD

    assert np.all(tagger.vocabulary.thresholds[-3:] == np.float32(OPEN_SET_THRESHOLD))
    meta = tagger.metadata()
    assert meta["open_set"]["tags"] == list(open_set.tags)
    assert meta["open_set"]["text_encoder"] == str(tiny_clip)
    assert meta["vocabulary"] == list(tagger.vocabulary.tags)


def test_ram_gets_the_normalised_mean_of_the_descriptions(ram_tiny: OfficialFixture, tiny_clip: Path) -> None:
    base = load_tagger(**ram_tiny.tagger_kwargs(), device="cpu", precision="fp32")
    open_set = load_open_set("cat wearing a hat,red umbrella", text_encoder=str(tiny_clip))
    tagger = open_set_tagger(base, open_set, vocab="open")
    mean = open_set.embedded.embeddings.mean(dim=1)
    expected_embed = (mean / mean.norm(dim=-1, keepdim=True)).unsqueeze(1)
    assert torch.allclose(tagger.open_embed, expected_embed, atol=1e-6)
    batch = image_batch(tagger, ram_tiny)
    np.testing.assert_allclose(tagger.scores(batch), by_hand(tagger, batch, expected_embed), rtol=0, atol=1e-5)


def test_embeddings_file_and_descriptions_agree(tmp_path: Path, tiny_clip: Path, tiny_tagger: Tagger, ramplus_tiny: OfficialFixture) -> None:
    descriptions = {"red umbrella": [f"text {i} about a red umbrella" for i in range(51)],
                    "cat wearing a hat": [f"text {i} about a cat in a hat" for i in range(51)]}
    from ramtag.describe.files import write_descriptions

    write_descriptions(tmp_path / "d.json", descriptions)
    write_embeddings(tmp_path / "d.safetensors", embed_descriptions(descriptions, TextEncoder(str(tiny_clip))))
    from_json = load_open_set(tmp_path / "d.json", text_encoder=str(tiny_clip))
    from_file = load_open_set(str(tmp_path / "d.safetensors"))
    assert from_json.tags == from_file.tags == ("red umbrella", "cat wearing a hat")
    assert torch.allclose(from_json.embedded.embeddings, from_file.embedded.embeddings, atol=1e-6)
    with pytest.raises(UsageError, match="embedded with"):
        load_open_set(str(tmp_path / "d.safetensors"), text_encoder="openai/clip-vit-base-patch16")


def test_rare_200_runs_end_to_end(tiny_clip: Path, tiny_tagger: Tagger, ramplus_tiny: OfficialFixture) -> None:
    open_set = load_open_set(RARE_200, text_encoder=str(tiny_clip))
    assert len(open_set.tags) == 200 and open_set.tags[0] == "Aerial photography"
    assert open_set.embedded.embeddings.shape == (200, 51, 512)
    for vocab, size in (("open", 200), ("both", 216)):
        tagger = open_set_tagger(tiny_tagger, open_set, vocab=vocab)
        results = tagger.tag([ramplus_tiny.images / "demo2.jpg"])
        assert len(results) == 1
        for result in results:
            assert result.all_scores.shape == (size,)
            assert all(tag in tagger.vocabulary.tags for tag in result.tags)
            assert result.scores == sorted(result.scores, reverse=True)
    assert len(read_descriptions(RARE_200)) == 200


def test_bad_specs_are_clear(tmp_path: Path, tiny_tagger: Tagger, tiny_clip: Path) -> None:
    with pytest.raises(VocabularyError, match="no such file"):
        load_open_set(str(tmp_path / "missing.json"))
    with pytest.raises(UsageError, match="empty"):
        load_open_set(" , ")
    clash = load_open_set("cat,red umbrella", text_encoder=str(tiny_clip))
    with pytest.raises(UsageError, match="already in the built-in vocabulary"):  # exit 2, as usage mistakes
        open_set_tagger(tiny_tagger, clash, vocab="both")
    assert open_set_tagger(tiny_tagger, clash, vocab="open").vocabulary.tags == ("cat", "red umbrella")
    spelt = load_open_set("Cat,red umbrella", text_encoder=str(tiny_clip))  # both would be written: one keyword
    with pytest.raises(UsageError, match=r"already in the built-in vocabulary: 'Cat' \(as 'cat'\)"):
        open_set_tagger(tiny_tagger, spelt, vocab="both")
    with pytest.raises(UsageError, match="--vocab"):
        open_set_tagger(tiny_tagger, clash, vocab="all")
    names = tmp_path / "names.txt"
    names.write_text("red umbrella\n# comment\nblue bicycle\n", encoding="utf-8")
    assert load_open_set(names, text_encoder=str(tiny_clip)).tags == ("red umbrella", "blue bicycle")


def test_wrong_width_is_refused(tiny_tagger: Tagger) -> None:
    with pytest.raises(UsageError, match="do not fit the model"):
        tiny_tagger.with_open_set(tiny_tagger.vocabulary, F.normalize(torch.randn(16, 51, 768), dim=-1), keep_builtin=False)
    from ramtag.describe.files import LabelEmbeddings
    from ramtag.openset import OpenSet

    wide = OpenSet(LabelEmbeddings(("kite",), F.normalize(torch.randn(1, 51, 768), dim=-1), "clip-large"), "kite.safetensors")
    with pytest.raises(UsageError, match=r"kite.safetensors: embeddings 768 wide, .* \(512 wide: CLIP ViT-B/16\)"):
        open_set_tagger(tiny_tagger, wide, vocab="open")


def run_cli(*args: str) -> Result:
    from ramtag.cli.app import app

    return CliRunner().invoke(app, ["run", *args])


def parquet_scores(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    import pyarrow.parquet as pq

    from ramtag.outputs.schema import read_metadata

    table = pq.read_table(path)
    rows = table.to_pylist()
    return {Path(row["path"]).name: np.asarray(row["all_scores"]) for row in rows}, read_metadata(table.schema)


@pytest.mark.parametrize("vocab", ["open", "both"])
def test_run_tags_gives_the_scores_of_the_model_by_hand(
    vocab: str, tmp_path: Path, tiny_clip: Path, tiny_tagger: Tagger, ramplus_tiny: OfficialFixture
) -> None:
    import shutil

    from ramtag.inputs import decode_image

    open_set = load_open_set("cat wearing a hat,red umbrella,blue bicycle", text_encoder=str(tiny_clip))
    embeddings = tmp_path / "open.safetensors"
    write_embeddings(embeddings, open_set.embedded)
    photos = tmp_path / "photos"
    photos.mkdir()
    names = ["demo2.jpg", "synth_gray.png"]
    for name in names:
        shutil.copy(ramplus_tiny.images / name, photos / name)
    out = tmp_path / "out.parquet"
    result = run_cli(str(photos), "--tags", str(embeddings), "--vocab", vocab, *ramplus_tiny.cli_args(),
                     "--out", str(out), "--all-scores", "--device", "cpu", "--precision", "fp32",
                     "--workers", "0", "--quiet")
    assert result.exit_code == 0, result.output
    scores, meta = parquet_scores(out)
    batch = torch.stack([tiny_tagger.preprocess(decode_image(photos / name)) for name in names])
    embed = open_set.embedded.embeddings
    if vocab == "both":
        embed = torch.cat([tiny_tagger.model.label_embed, embed])
    expected = by_hand(tiny_tagger, batch, embed)
    for row, name in enumerate(names):
        np.testing.assert_allclose(scores[name], expected[row], atol=1e-5)
    assert meta["open_set"]["tags"] == list(open_set.tags)
    assert meta["vocabulary"][-3:] == list(open_set.tags)
    assert len(meta["vocabulary"]) == (19 if vocab == "both" else 3)


def test_run_with_the_official_rare_200_descriptions(tmp_path: Path, tiny_clip: Path, ramplus_tiny: OfficialFixture) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli(str(ramplus_tiny.images / "demo2.jpg"), "--tags", str(RARE_200), "--text-encoder", str(tiny_clip),
                     *ramplus_tiny.cli_args(), "--out", str(out), "--all-scores", "--device", "cpu", "--workers", "0", "--quiet")
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    assert len(row["all_scores"]) == 200 and row["error"] is None
    names = set(read_descriptions(RARE_200))
    assert set(row["tags"]) <= names


def test_run_tags_options_need_tags(tmp_path: Path, ramplus_tiny: OfficialFixture) -> None:
    result = run_cli(str(ramplus_tiny.images / "demo2.jpg"), "--vocab", "both", *ramplus_tiny.cli_args())
    assert result.exit_code == 2 and "--tags" in result.stderr


@pytest.mark.parametrize("vocab", ["open", "both"])
def test_thresholds_calibrated_on_an_open_set_run_are_taken_by_the_next_run(
    vocab: str, tmp_path: Path, tiny_clip: Path, ramplus_tiny: OfficialFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval --calibrate on an open-set run's scores names each tag in its file: run --thresholds
    applies them by name, also to the same --tags named in another order. The open-set tags' values
    used to be ignored (--vocab open) or the file refused as one of another release (both)."""
    import pyarrow.parquet as pq

    from ramtag.cli.app import app
    from ramtag.openset import load_open_set
    from ramtag.outputs.schema import read_metadata

    monkeypatch.setenv("RAMTAG_CACHE", str(tmp_path / "cache"))
    embedded = {}
    for order in ("red umbrella,blue bicycle", "blue bicycle,red umbrella"):
        embedded[order] = tmp_path / f"{order}.safetensors"
        write_embeddings(embedded[order], load_open_set(order, text_encoder=str(tiny_clip)).embedded)
    common = [str(ramplus_tiny.images), "--vocab", vocab, *ramplus_tiny.cli_args(), "--device", "cpu",
              "--precision", "fp32", "--workers", "0", "--batch-size", "9", "--quiet"]
    first = tmp_path / "first.parquet"
    assert run_cli(*common, "--tags", str(embedded["red umbrella,blue bicycle"]), "--out", str(first),
                   "--all-scores").exit_code == 0
    scores, meta = parquet_scores(first)
    column = meta["vocabulary"].index("red umbrella")
    ranked = sorted(scores, key=lambda name: -scores[name][column])
    labelled = set(ranked[:3])  # the three images scoring highest for it: calibrated between the 3rd and 4th
    gt = tmp_path / "labels.csv"
    gt.write_text("path,tags\n" + "".join(f"{name},{'red umbrella' if name in labelled else ''}\n" for name in ranked),
                  encoding="utf-8")
    calibrated = tmp_path / "calibrated.txt"
    result = CliRunner().invoke(app, ["eval", "--gt", str(gt), "--pred", str(first), "--calibrate", str(calibrated)])
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in calibrated.read_text(encoding="utf-8").splitlines()]
    assert [name for _, name in lines] == meta["vocabulary"] and len(lines) == (18 if vocab == "both" else 2)
    values = {name: float(value) for value, name in lines}
    assert scores[ranked[3]][column] <= values["red umbrella"] < scores[ranked[2]][column] < 0.5  # not the default

    for order, path in embedded.items():
        again = tmp_path / f"again {order}.parquet"
        result = run_cli(*common, "--tags", str(path), "--out", str(again), "--thresholds", str(calibrated))
        assert result.exit_code == 0, result.output
        assert "warning" not in result.stderr
        table = pq.read_table(again)
        recorded = read_metadata(table.schema)
        assert np.allclose(recorded["thresholds"], [values[tag] for tag in recorded["vocabulary"]], atol=1e-6)
        for row in table.to_pylist():
            assert ("red umbrella" in row["tags"]) == (Path(row["path"]).name in labelled), row["path"]


def test_a_thresholds_file_fitting_no_vocabulary_of_the_run_is_refused_before_the_weights_load(
    tmp_path: Path, tiny_clip: Path, ramplus_tiny: OfficialFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ramtag.loading as loading
    from ramtag.openset import load_open_set

    embeddings = tmp_path / "open.safetensors"
    write_embeddings(embeddings, load_open_set("red umbrella,blue bicycle", text_encoder=str(tiny_clip)).embedded)
    kwargs = {**ramplus_tiny.tagger_kwargs(), "tags": str(embeddings), "device": "cpu"}
    values = tmp_path / "values.txt"

    def write(count: int) -> None:
        values.write_text("".join(f"{0.3 + i / 100:g}\n" for i in range(count)), encoding="utf-8")

    with monkeypatch.context() as patch:
        patch.setattr(loading, "load_model", lambda *_a, **_k: pytest.fail("the weights were loaded"))
        write(3)
        with pytest.raises(UsageError, match=r"3 thresholds, but --tags names 2 tags"):
            load_tagger(**{**kwargs, "thresholds": values}, vocab="open")
        write(17)
        with pytest.raises(UsageError, match=r"17 thresholds for 16 built-in tags and 2 from --tags; give 16, or 18"):
            load_tagger(**{**kwargs, "thresholds": values}, vocab="both")
        write(6)  # --only-tags picks 4: the file is theirs and the open-set tags'
        with pytest.raises(UsageError, match=r"only_tags \(--only-tags\) picks built-in tags, which vocab='open'"):
            load_tagger(**{**kwargs, "thresholds": values}, vocab="open", only_tags="cat,dog,sky,car")  # as run says
    tagger = load_tagger(**{**kwargs, "thresholds": values}, vocab="both", only_tags="cat,dog,sky,car")
    assert tagger.vocabulary.tags[4:] == ("red umbrella", "blue bicycle")
    assert np.allclose(tagger.vocabulary.thresholds, np.loadtxt(values))
    # The tag list's own file still goes to the built-in tags, the open-set ones keep 0.5.
    tagger = load_tagger(**kwargs, vocab="both")
    official = np.loadtxt(ramplus_tiny.thresholds, dtype=np.float32)
    assert np.allclose(tagger.vocabulary.thresholds, [*official, 0.5, 0.5])
