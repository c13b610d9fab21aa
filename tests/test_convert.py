"""Official-format checkpoints of any size load: architecture inferred, strict, with clear errors."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest
import torch

from ramtag.errors import CheckpointError
from ramtag.model.config import DecoderConfig, ModelConfig, SwinConfig
from ramtag.model.convert import convert_official, export_official, infer_config, unwrap
from ramtag.model.load import LAYOUT_VERSION, load_model, read_checkpoint
from ramtag.model.network import RamModel

CONFIGS = {
    # RAM++ at 224 px (window 7), uneven heads, three decoder layers.
    "ramplus_224": ModelConfig(
        kind="ram_plus",
        image_size=224,
        swin=SwinConfig(embed_dim=24, depths=(2, 2, 4, 2), num_heads=(2, 3, 6, 12), window_size=7),
        decoder=DecoderConfig(hidden_size=128, num_layers=3, intermediate_size=256),
        num_tags=7,
        descriptions_per_tag=51,
    ),
    # RAM++ whose decoder is as wide as the text embeddings: no wordvec_proj (identity).
    "ramplus_identity_proj": ModelConfig(
        kind="ram_plus",
        image_size=384,
        swin=SwinConfig(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4), window_size=12),
        decoder=DecoderConfig(hidden_size=512, num_layers=1, intermediate_size=256),
        num_tags=5,
        descriptions_per_tag=4,
    ),
    # RAM at 224 px with a three-stage Swin.
    "ram_224_three_stages": ModelConfig(
        kind="ram",
        image_size=224,
        swin=SwinConfig(embed_dim=16, depths=(2, 2, 2), num_heads=(1, 2, 4), window_size=7),
        decoder=DecoderConfig(hidden_size=64, num_layers=2, intermediate_size=128),
        num_tags=11,
        descriptions_per_tag=1,
    ),
}


def random_model(config: ModelConfig, seed: int = 0) -> RamModel:
    generator = torch.Generator().manual_seed(seed)
    model = RamModel(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name == "reweight_scale":
                param.fill_(3.0)
            else:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model


def save_official(model: RamModel, path: Path, **extra: object) -> Path:
    torch.save({"model": export_official(model), **extra}, path)
    return path


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_any_official_checkpoint_round_trips(name: str, tmp_path: Path) -> None:
    config = CONFIGS[name]
    source = random_model(config)
    path = save_official(source, tmp_path / "model.pth")

    model, info = load_model(path, num_tags=config.num_tags)

    assert info.config == config
    images = torch.randn(2, 3, config.image_size, config.image_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        torch.testing.assert_close(model(images), source(images), atol=1e-5, rtol=0)


def test_input_size_comes_from_attention_mask(tmp_path: Path) -> None:
    """A window-6 Swin at 192 px: the mask's window count tells the size; the window alone cannot."""
    config = ModelConfig(
        kind="ram",
        image_size=192,
        swin=SwinConfig(embed_dim=16, depths=(2, 2, 2), num_heads=(1, 1, 2), window_size=6),
        decoder=DecoderConfig(hidden_size=32, num_layers=1, intermediate_size=64),
        num_tags=3,
        descriptions_per_tag=1,
    )
    state = export_official(random_model(config))
    assert infer_config(state).image_size == 192
    without_masks = {k: v for k, v in state.items() if "attn_mask" not in k}
    with pytest.raises(CheckpointError, match="--image-size"):
        infer_config(without_masks)
    assert infer_config(without_masks, image_size=192).image_size == 192


def test_released_window_sizes_imply_input_size() -> None:
    for name, size in (("ramplus_224", 224), ("ramplus_identity_proj", 384)):
        state = export_official(random_model(CONFIGS[name]), with_buffers=False)
        assert infer_config(state, num_tags=CONFIGS[name].num_tags).image_size == size


def test_descriptions_per_tag_follow_the_tag_list() -> None:
    state = export_official(random_model(CONFIGS["ramplus_identity_proj"]))
    assert infer_config(state, num_tags=5).descriptions_per_tag == 4
    assert infer_config(state, num_tags=10).descriptions_per_tag == 2
    with pytest.raises(CheckpointError, match="not a whole number per tag"):
        infer_config(state, num_tags=3)
    with pytest.raises(CheckpointError, match="give its tag list"):
        infer_config(state)


def test_fixture_converts_and_exports_back_unchanged(ramplus_tiny, ram_tiny) -> None:
    for fixture in (ramplus_tiny, ram_tiny):
        official = read_checkpoint(fixture.checkpoint)
        model = RamModel(infer_config(official, num_tags=16))
        model.load_state_dict(convert_official(official, model), strict=True)
        back = export_official(model)
        kept = {k: v for k, v in official.items() if not k.startswith(("tag_encoder.", "text_decoder."))}
        assert set(back) == set(kept)
        for key, value in kept.items():
            assert torch.equal(back[key], value), key


def test_vision_multi_naming_is_accepted(ram_tiny, tmp_path: Path) -> None:
    state = read_checkpoint(ram_tiny.checkpoint)
    renamed = {k.replace("tagging_head.", "vision_multi.", 1): v for k, v in state.items()}
    path = tmp_path / "old_names.pth"
    torch.save({"model": renamed}, path)
    model, _ = load_model(path, num_tags=16)
    reference, _ = load_model(ram_tiny.checkpoint, num_tags=16)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value)


def test_converted_weights_are_cached(ramplus_tiny, isolated_user_dirs: Path) -> None:
    first, info1 = load_model(ramplus_tiny.checkpoint, num_tags=16)
    second, info2 = load_model(ramplus_tiny.checkpoint, num_tags=16)
    assert not info1.from_cache and info2.from_cache
    assert info1.sha256 == info2.sha256 and len(info1.sha256) == 64
    cached = list((isolated_user_dirs / "ramtag" / "converted").glob(f"{info1.sha256}*.safetensors"))
    assert len(cached) == 1
    umask = os.umask(0o022)
    os.umask(umask)
    assert cached[0].stat().st_mode & 0o777 == 0o666 & ~umask  # safetensors made it 0600: a shared cache's users could not read it
    # The converted file itself is a valid --checkpoint.
    third, info3 = load_model(cached[0])
    for key, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[key], value)
        assert torch.equal(third.state_dict()[key], value)
    assert info3.config == info1.config


def test_one_cached_conversion_serves_runs_with_and_without_a_tag_list(ramplus_tiny, isolated_user_dirs: Path) -> None:
    """``ramtag run`` names the tag list (16 tags), ``ramtag bench`` may not: one copy of the weights."""
    _, named = load_model(ramplus_tiny.checkpoint, num_tags=16)
    _, implied = load_model(ramplus_tiny.checkpoint)
    assert not named.from_cache and implied.from_cache and implied.config == named.config
    folder = isolated_user_dirs / "ramtag" / "converted"
    assert [p.name for p in folder.glob("*.safetensors")] == [f"{named.sha256}-t16-s384-v{LAYOUT_VERSION}.safetensors"]
    for path in folder.iterdir():
        path.unlink()
    _, implied = load_model(ramplus_tiny.checkpoint)  # the other way round
    _, named = load_model(ramplus_tiny.checkpoint, num_tags=16, image_size=384)
    assert not implied.from_cache and named.from_cache and len(list(folder.glob("*.safetensors"))) == 1
    # A checkpoint whose tag count only its tag list tells (4 descriptions a tag, not 51): its
    # conversion is found again by the same request, the input size still read from the weights.
    custom = save_official(random_model(CONFIGS["ramplus_identity_proj"]), isolated_user_dirs / "custom.pth")
    _, first = load_model(custom, num_tags=5)
    _, again = load_model(custom, num_tags=5)
    assert not first.from_cache and again.from_cache and again.config.image_size == 384
    assert len(list(folder.glob("*.safetensors"))) == 2


def test_a_conversion_recorded_by_the_previous_version_is_found(ramplus_tiny, isolated_user_dirs: Path) -> None:
    """One version recorded ``as_inferred`` for both the tag count and the input size."""
    import json

    from safetensors.torch import load_file, save_file

    _, first = load_model(ramplus_tiny.checkpoint, num_tags=16)
    (cached,) = (isolated_user_dirs / "ramtag" / "converted").glob("*.safetensors")
    with open(cached, "rb") as handle:
        metadata = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))["__metadata__"]
    metadata.pop("inferred")
    save_file(load_file(str(cached)), str(cached), metadata={**metadata, "as_inferred": "1"})
    cached.with_name(cached.name + ".sha256").unlink()  # that version recorded no sha256
    _, again = load_model(ramplus_tiny.checkpoint, num_tags=16)
    assert again.from_cache


def test_a_tag_list_of_another_checkpoint_is_said_on_every_load(ramplus_tiny) -> None:
    """16 tags of 51 descriptions: 8 tags would read as 102 descriptions a tag, and score nonsense;
    said again when the conversion comes from the cache (a checkpoint trained so still loads)."""
    from ramtag.errors import RamtagWarning

    for cached in (False, True):
        with pytest.warns(RamtagWarning, match="816 description embeddings, 16 tags of 51 as released, but the tag "
                                               "list has 8 tags, read as 102 descriptions a tag"):
            _, info = load_model(ramplus_tiny.checkpoint, num_tags=8)
        assert info.from_cache is cached


def test_a_tag_list_that_cannot_fit_says_what_the_checkpoint_holds(ramplus_tiny) -> None:
    """'816 description embeddings, not a multiple of 4585' named neither its 16 tags nor the fix."""
    with pytest.raises(CheckpointError) as raised:
        load_model(ramplus_tiny.checkpoint, num_tags=4585)
    assert "816 description embeddings (16 tags of 51 descriptions, as released)" in str(raised.value)
    assert str(raised.value).endswith("pass its own with --tag-list")


def test_corrupt_cache_is_rebuilt(ramplus_tiny, isolated_user_dirs: Path) -> None:
    _, info = load_model(ramplus_tiny.checkpoint, num_tags=16)
    (cached,) = (isolated_user_dirs / "ramtag" / "converted").glob("*.safetensors")
    cached.write_bytes(cached.read_bytes()[:1000])
    model, again = load_model(ramplus_tiny.checkpoint, num_tags=16)
    assert not again.from_cache
    assert cached.stat().st_size > 1000


@pytest.mark.parametrize("damage", ["overwritten", "cut off", "cut off before it was recorded"])
def test_a_converted_copy_damaged_since_is_made_again(
    ramplus_tiny, isolated_user_dirs: Path, damage: str
) -> None:
    """A disk error, or a copy of the cache cut off: every score was NaN and the run said "0 errors",
    or every run ended in safetensors' traceback."""
    first, _ = load_model(ramplus_tiny.checkpoint, num_tags=16)
    (cached,) = (isolated_user_dirs / "ramtag" / "converted").glob("*.safetensors")
    data = bytearray(cached.read_bytes())
    if damage == "overwritten":  # the same size, other bytes in the weights
        data[len(data) // 2 : len(data) // 2 + 4096] = bytes(range(256)) * 16
    else:
        data = data[: len(data) // 2]
        if damage == "cut off before it was recorded":
            cached.with_name(cached.name + ".sha256").unlink()
    cached.write_bytes(bytes(data))
    model, info = load_model(ramplus_tiny.checkpoint, num_tags=16)
    assert not info.from_cache
    for key, value in first.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert load_model(ramplus_tiny.checkpoint, num_tags=16)[1].from_cache  # the copy made again is used


def test_a_full_disk_for_the_converted_copy_costs_only_the_copy(
    ramplus_tiny, isolated_user_dirs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safetensors import SafetensorError

    from ramtag.model import load

    def full(*args: object, **kwargs: object) -> None:
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(load, "save_file", full)
    model, info = load_model(ramplus_tiny.checkpoint, num_tags=16)  # loaded all the same
    assert not info.from_cache and model.config.num_tags == 16


# --- errors: one line naming the file and what to do -------------------------------------------


def _message(excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as excinfo:
        load_model(tmp_path / "nope.pth")
    assert "nope.pth" in _message(excinfo) and "--checkpoint" in _message(excinfo)


def test_truncated_download(ramplus_tiny, tmp_path: Path) -> None:
    cut = tmp_path / "ram_plus.pth"
    cut.write_bytes(ramplus_tiny.checkpoint.read_bytes()[:4_000_000])
    with pytest.raises(CheckpointError) as excinfo:
        load_model(cut)
    assert str(cut) in _message(excinfo) and "download it again" in _message(excinfo)


@pytest.mark.parametrize(
    ("content", "said"),
    [(b"", "empty"), (b"hello, not weights\n", "holds text"), (b"\xff\xd8\xff\xe0\x00\x10JFIF", "holds a JPEG image")],
)
def test_not_a_checkpoint(tmp_path: Path, content: bytes, said: str) -> None:
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as excinfo:
        load_model(path)
    assert str(path) in _message(excinfo) and said in _message(excinfo)
    assert "unpickle" not in _message(excinfo)  # not mistaken for a pickle of other objects


def test_arbitrary_objects_are_never_unpickled(ram_tiny, tmp_path: Path) -> None:
    state = read_checkpoint(ram_tiny.checkpoint)
    path = tmp_path / "with_args.pth"
    torch.save({"model": state, "args": argparse.Namespace(lr=1)}, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_model(path)
    assert "never unpickles" in _message(excinfo)


def test_a_legacy_pickle_is_refused_in_one_line_without_torchs_warning(tmp_path: Path) -> None:
    """A pre-zip pickle (pickle.dump) was refused after two lines of torch's UserWarning."""
    import pickle
    import warnings

    path = tmp_path / "legacy.pth"
    path.write_bytes(pickle.dumps({"args": argparse.Namespace(lr=1)}, protocol=4))
    with warnings.catch_warnings(record=True) as said, pytest.raises(CheckpointError, match="never unpickles"):
        warnings.simplefilter("always")
        load_model(path)
    assert [str(note.message) for note in said] == []


def test_ram_file_where_ram_plus_was_asked(ram_tiny) -> None:
    with pytest.raises(CheckpointError) as excinfo:
        load_model(ram_tiny.checkpoint, num_tags=16, kind="ram_plus")
    message = _message(excinfo)
    assert "is a RAM checkpoint but RAM++ was asked for" in message and "--model ram" in message


def test_missing_and_unexpected_keys_are_named(ramplus_tiny, tmp_path: Path) -> None:
    state = read_checkpoint(ramplus_tiny.checkpoint)
    del state["image_proj.bias"]
    state["surprise.weight"] = torch.zeros(2)
    path = tmp_path / "edited.pth"
    torch.save({"model": state}, path)
    with pytest.raises(CheckpointError) as excinfo:
        load_model(path, num_tags=16)
    message = _message(excinfo)
    assert "1 missing (e.g. image_proj.bias)" in message
    assert "1 unexpected (e.g. surprise.weight)" in message


def test_wrong_tag_list_length(ram_tiny) -> None:
    with pytest.raises(CheckpointError, match="has 16 tags but the tag list has 15"):
        load_model(ram_tiny.checkpoint, num_tags=15)


def test_not_a_ram_model(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3)}, path)
    with pytest.raises(CheckpointError, match="not a RAM or RAM\\+\\+ checkpoint"):
        load_model(path)


def test_unwrap_accepts_bare_state_dicts() -> None:
    bare = {"label_embed": torch.zeros(2, 4)}
    assert unwrap(bare).keys() == {"label_embed"}
    assert unwrap({"model": bare}).keys() == {"label_embed"}
