"""``--only-tags``: a few built-in tags scored as a full pass scores them, without decoding the rest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner, Result

from conftest import OfficialFixture
from ramtag import load_tagger
from ramtag.errors import UsageError
from ramtag.model.labels import TagVocabulary
from ramtag.tagger import Tagger

# Tags are decoded independently; a subset only changes how many rows each matrix product has, which
# can change the kernels' blocking (fp32 rounding of logits of size ~10: well under 1e-5 after sigmoid).
CLOSE = 1e-5


def run_cli(*args: str | Path) -> Result:
    from ramtag.cli.app import app

    return CliRunner().invoke(app, ["run", *map(str, args)])


def pixels(tagger: Tagger, fixture: OfficialFixture) -> torch.Tensor:
    from ramtag.inputs import decode_image

    names = ["demo2.jpg", "demo4.jpg", "synth_gray.png"]
    return torch.stack([tagger.preprocess(decode_image(fixture.images / name)) for name in names])


@pytest.mark.parametrize(("kind", "chunk"), [("ramplus_tiny", 2), ("ram_tiny", None)])  # 2: two tags at a time
def test_named_tags_score_as_in_a_full_pass(kind: str, chunk: int | None, request: pytest.FixtureRequest) -> None:
    fixture: OfficialFixture = request.getfixturevalue(kind)
    full = load_tagger(**fixture.tagger_kwargs(), device="cpu", precision="fp32")
    tags = full.vocabulary.tags
    # In the order named, each once: a Chinese name, another case, a repeat.
    names = [tags[7], full.vocabulary.tags_zh[2], tags[0].upper(), tags[7]]
    only = full.only(names)
    assert only.vocabulary.tags == (tags[7], tags[2], tags[0])
    assert only.vocabulary.tags_zh == tuple(full.vocabulary.tags_zh[i] for i in (7, 2, 0))
    np.testing.assert_array_equal(only.vocabulary.thresholds, full.vocabulary.thresholds[[7, 2, 0]])
    assert only.metadata()["vocabulary"] == [tags[7], tags[2], tags[0]]  # what a resume compares
    if chunk is not None:
        only.model.tag_chunk = chunk
    batch = pixels(full, fixture)
    want = full.scores(batch)[:, [7, 2, 0]]
    got = only.scores(batch)
    assert got.shape == (len(batch), 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=CLOSE)
    for row in range(len(batch)):  # tags over the subset's own (official) thresholds
        result = only.result(got[row])
        assert set(result.tags) == {only.vocabulary.tags[i] for i in np.flatnonzero(want[row] > only.vocabulary.thresholds)}


def test_the_other_tags_are_never_decoded(tiny_tagger: Tagger, ramplus_tiny: OfficialFixture) -> None:
    seen: list[int] = []
    decoder = tiny_tagger.model.decoder
    hook = decoder.register_forward_pre_hook(lambda _module, args: seen.append(args[0].shape[1]))
    try:
        only = tiny_tagger.only([tiny_tagger.vocabulary.tags[3], tiny_tagger.vocabulary.tags[5]])
        only.scores(pixels(tiny_tagger, ramplus_tiny)[:1])
        assert seen == [2]  # two queries an image, not the vocabulary's 16
        seen.clear()
        tiny_tagger.scores(pixels(tiny_tagger, ramplus_tiny)[:1])
        assert seen == [len(tiny_tagger.vocabulary)]
    finally:
        hook.remove()


def test_chinese_names_pick_every_tag_they_name_and_unknown_names_are_one_error() -> None:
    vocabulary = TagVocabulary.from_names(["crow", "raven", "dog", "Hot dog"], tags_zh=["乌鸦", "乌鸦", "狗", "热狗"])
    assert vocabulary.positions(["乌鸦"]) == [0, 1]
    assert vocabulary.positions(["hot DOG", "dog"]) == [3, 2]
    with pytest.raises(UsageError) as raised:
        vocabulary.positions(["dgo", "kitten", "crow"])
    message = str(raised.value)
    assert "'dgo' (did you mean 'dog'?)" in message and "'kitten'" in message and "'crow'" not in message
    assert "--tags" in message and "\n" not in message
    with pytest.raises(UsageError, match="Chinese names need the Chinese tag list: pass --tag-list-zh"):
        TagVocabulary.from_names(["dog"]).positions(["狗"])  # no Chinese list given: no spelling mistake


def test_a_misspelt_name_costs_no_model_load(ramplus_tiny: OfficialFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import ramtag.loading as loading

    def no_load(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(loading, "load_model", no_load)
    with pytest.raises(UsageError, match="'cta'"):
        load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", only_tags=["cat", "cta"])


def test_int8_on_a_subset_is_as_close_to_fp32_as_on_everything(ramplus_tiny: OfficialFixture, tiny_tagger: Tagger) -> None:
    fast = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision="int8")
    names = list(fast.vocabulary.tags[:4])
    batch = pixels(fast, ramplus_tiny)
    exact = tiny_tagger.scores(batch)
    # int8 scales a layer's input by its range, which in the decoder spans the tags decoded together:
    # a subset's int8 scores are not its full pass's, but as near fp32 (test_devices: mean < 0.03).
    only = fast.only(names).scores(batch)
    assert np.abs(only - exact[:, :4]).mean() < 0.03
    assert np.abs(fast.scores(batch) - exact).mean() < 0.03


def test_run_only_tags_writes_them_alone_and_a_rerun_must_name_the_same(tmp_path: Path, ramplus_tiny: OfficialFixture) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("demo2.jpg", "demo4.jpg"):
        shutil.copy(ramplus_tiny.images / name, photos / name)
    tags = ramplus_tiny.tags.read_text(encoding="utf-8").splitlines()
    common = [*ramplus_tiny.cli_args(), "--all-scores", "--workers", "0", "--device", "cpu", "--quiet"]
    full = tmp_path / "full.jsonl"
    assert run_cli(photos, "--out", full, *common).exit_code == 0
    wanted = tmp_path / "wanted.txt"
    wanted.write_text(f"{tags[4]}\n\n{tags[1]}\n", encoding="utf-8-sig")  # a byte-order mark, a blank line
    out = tmp_path / "only.parquet"
    result = run_cli(photos, "--out", out, "--only-tags", wanted, *common)
    assert result.exit_code == 0, result.output

    import pyarrow.parquet as pq

    from ramtag.outputs.schema import read_metadata

    table = pq.read_table(out)
    assert read_metadata(table.schema)["vocabulary"] == [tags[4], tags[1]]
    rows = {row["path"]: row for row in table.to_pylist()}
    for line in full.read_text(encoding="utf-8").splitlines():
        want = json.loads(line)
        got = rows[want["path"]]
        np.testing.assert_allclose(got["all_scores"], np.asarray(want["all_scores"])[[4, 1]], rtol=0, atol=CLOSE)
        assert set(got["tags"]) == set(want["tags"]) & {tags[4], tags[1]}

    again = run_cli(photos, "--out", out, "--only-tags", wanted, *common)
    assert again.exit_code == 0 and pq.read_table(out).num_rows == 2
    other = run_cli(photos, "--out", out, "--only-tags", tags[4], *common)
    assert other.exit_code != 0 and "the tags scored (--tag-list, --only-tags)" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only-tags", " , "], "names no tag"),
        (["--only-tags", "{tmp}/missing.txt"], "file not found"),
        (["--only-tags", "cat", "--tags", "red umbrella"], "add --vocab both"),
        (["--only-tags", "cat,notatag"], "'notatag'"),
    ],
)
def test_usage_errors(tmp_path: Path, ramplus_tiny: OfficialFixture, args: list[str], message: str) -> None:
    result = run_cli(ramplus_tiny.images / "demo2.jpg", *[arg.format(tmp=tmp_path) for arg in args],
                     *ramplus_tiny.cli_args(), "--device", "cpu")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_with_open_set_tags_after_them(ramplus_tiny: OfficialFixture, tiny_tagger: Tagger) -> None:
    from ramtag.openset import OpenSet
    from ramtag.describe.files import LabelEmbeddings

    embed = tiny_tagger.model.label_embed[[5, 6]].detach().clone()
    open_set = OpenSet(LabelEmbeddings(("kite", "lamp"), embed, text_encoder="test"), "test")
    from ramtag.openset import open_set_tagger

    both = open_set_tagger(tiny_tagger.only(["cat", "dog"]), open_set, vocab="both")
    assert both.vocabulary.tags == ("cat", "dog", "kite", "lamp")
    batch = pixels(tiny_tagger, ramplus_tiny)
    # The open-set copies of tags 5 and 6 score as those tags do: the same embeddings, the same decoder.
    np.testing.assert_allclose(both.scores(batch), tiny_tagger.scores(batch)[:, [0, 1, 5, 6]], rtol=0, atol=CLOSE)


def test_the_engines_and_serve_load_what_a_job_names(ramplus_tiny: OfficialFixture) -> None:
    from ramtag.engine.job import ModelOptions
    from ramtag.engine.local import tagger_for

    options = ModelOptions(checkpoint=str(ramplus_tiny.checkpoint), tag_list=str(ramplus_tiny.tags),
                           thresholds=str(ramplus_tiny.thresholds), device="cpu", only_tags=("dog", "cat"))
    assert tagger_for(options).vocabulary.tags == ("dog", "cat")


@pytest.mark.parametrize("precision", ["bf16-mixed", "int8"])
def test_a_subset_shares_the_prepared_model_and_leaves_the_first_tagger_working(
    precision: str, ramplus_tiny: OfficialFixture
) -> None:
    # bf16-mixed is what --precision auto picks on CPUs with AMX: preparing its model a second time
    # (the cast to fp32 again) would leave bf16 islands fed fp32 weights.
    full = load_tagger(**ramplus_tiny.tagger_kwargs(), device="cpu", precision=precision)
    batch = pixels(full, ramplus_tiny)
    before = full.scores(batch)
    only = full.only("cat, dog")  # one string of names is taken apart
    assert only.model is full.model and only.vocabulary.tags == ("cat", "dog")
    got = only.scores(batch)
    np.testing.assert_array_equal(full.scores(batch), before)  # the first tagger is untouched
    if precision == "bf16-mixed":  # row-wise arithmetic: bf16 rounding, not bf16 noise, apart
        np.testing.assert_allclose(got, before[:, [0, 1]], rtol=0, atol=1e-2)
    with pytest.raises(UsageError, match="no tags named"):
        full.only([" "])
