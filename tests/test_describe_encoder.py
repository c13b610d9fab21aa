"""The CLIP text encoder and the label-embedding file, with a tiny random CLIP built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ramtag.describe.encoder import CONTEXT_LENGTH, TextEncoder, clean_text, encoder_fingerprint
from ramtag.describe.files import (
    embed_descriptions,
    embeddings_path_for,
    read_embeddings,
    write_embeddings,
)
from ramtag.errors import VocabularyError

BOS, EOT = 512, 513


def make_tiny_clip(folder: Path, *, seed: int = 0) -> Path:
    """A randomly initialised CLIP text tower (width 32, projection 512) and a byte-level tokenizer.

    The tokenizer has no merges, so every character is a token: long texts cross 77 tokens quickly.
    """
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {char: i for i, char in enumerate(alphabet)}
    vocab.update({char + "</w>": 256 + i for i, char in enumerate(alphabet)})
    vocab.update({"<|startoftext|>": BOS, "<|endoftext|>": EOT})
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(folder)
    config = CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=CONTEXT_LENGTH, projection_dim=512,
        bos_token_id=BOS, eos_token_id=EOT, pad_token_id=EOT,
    )
    torch.manual_seed(seed)
    CLIPTextModelWithProjection(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture
def encoder(tiny_clip: Path) -> TextEncoder:
    return TextEncoder(str(tiny_clip))


def test_clean_text_matches_openai_cleaning() -> None:
    assert clean_text("caf\u00c3\u00a9  au\n\tlait ") == "café au lait"  # mojibake repaired by ftfy
    assert clean_text("salt &amp;amp; pepper") == "salt & pepper"  # HTML unescaped twice
    assert clean_text("  a   b  ") == "a b"


def test_shapes_and_rows_are_normalised(encoder: TextEncoder) -> None:
    texts = ["a photo of a cat.", "a red umbrella in the rain", "x"]
    vectors = encoder.encode(texts)
    assert vectors.shape == (3, 512)
    assert vectors.dtype == torch.float32
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-6)
    # Each text is embedded on its own: batching changes nothing.
    alone = torch.cat([encoder.encode([text]) for text in texts])
    assert torch.allclose(vectors, alone, atol=1e-5)


def test_truncation_to_77_tokens_keeps_end_of_text(encoder: TextEncoder) -> None:
    long = "a very long description " * 20
    ids = encoder.tokenize([long, "short"])["input_ids"]
    assert ids.shape[1] == CONTEXT_LENGTH
    # As OpenAI's clip.tokenize(truncate=True): the first 76 tokens, then end-of-text in place of the rest.
    full = encoder.tokenizer(clean_text(long))["input_ids"]
    assert len(full) > CONTEXT_LENGTH
    assert ids[0].tolist() == full[: CONTEXT_LENGTH - 1] + [EOT]
    assert ids[0, 0] == BOS
    # The embedding is read at that end-of-text token.
    by_hand = encoder.model(input_ids=ids[:1]).text_embeds
    assert torch.allclose(encoder.encode([long]), torch.nn.functional.normalize(by_hand, dim=-1), atol=1e-5)
    assert not torch.allclose(encoder.encode([long]), encoder.encode([long[:40]]), atol=1e-3)


def test_cleaning_happens_before_tokenising(encoder: TextEncoder) -> None:
    plain, escaped = encoder.tokenize(["salt & pepper"]), encoder.tokenize(["salt &amp;amp;  pepper"])
    assert torch.equal(plain["input_ids"], escaped["input_ids"])


def test_embeddings_file_round_trip(encoder: TextEncoder, tmp_path: Path) -> None:
    descriptions = {"cat wearing a hat": ["a", "b", "c"], "red umbrella": ["d", "e", "f"]}
    embedded = embed_descriptions(descriptions, encoder)
    assert embedded.embeddings.shape == (2, 3, 512)
    assert torch.allclose(embedded.embeddings[1, 2], encoder.encode(["f"])[0], atol=1e-5)
    target = embeddings_path_for(tmp_path / "descriptions.json")
    assert target == tmp_path / "descriptions.safetensors"
    write_embeddings(target, embedded)
    back = read_embeddings(target)
    assert back.tags == ("cat wearing a hat", "red umbrella")
    assert back.text_encoder == encoder.name
    assert back.descriptions_sha256 == embedded.descriptions_sha256
    assert torch.equal(back.embeddings, embedded.embeddings)


def test_uneven_description_counts_are_refused(encoder: TextEncoder) -> None:
    with pytest.raises(VocabularyError, match="same number"):
        embed_descriptions({"a": ["x", "y"], "b": ["z"]}, encoder)


def test_foreign_safetensors_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(VocabularyError, match="not a ramtag label-embeddings file"):
        read_embeddings(tmp_path / "other.safetensors")


def test_fingerprint_follows_the_weights(tiny_clip: Path, tmp_path: Path) -> None:
    other = make_tiny_clip(tmp_path / "other", seed=1)
    assert encoder_fingerprint(str(tiny_clip)) != encoder_fingerprint(str(other))
    assert encoder_fingerprint("openai/clip-vit-base-patch16") == "openai/clip-vit-base-patch16"


def test_missing_encoder_offline_is_one_clear_error() -> None:
    from ramtag.errors import ResourceUnavailableError

    with pytest.raises(ResourceUnavailableError, match="offline"):
        TextEncoder("openai/clip-vit-base-patch16")


def test_official_descriptions_json_is_untouched_by_reading(tmp_path: Path) -> None:
    from conftest import SHARED
    from ramtag.describe.files import read_descriptions, write_descriptions

    official = SHARED / "ram_data" / "benchmarks" / "openimages_rare_200" / "openimages_rare_200_llm_tag_descriptions.json"
    loaded = read_descriptions(official)
    assert len(loaded) == 200 and all(len(texts) == 51 for texts in loaded.values())
    write_descriptions(tmp_path / "again.json", loaded)
    # Read back the way the official code does: list(item.keys())[0], list(item.values())[0].
    with open(tmp_path / "again.json", "rb") as handle:
        ours = json.load(handle)
    with open(official, "rb") as handle:
        theirs = json.load(handle)
    assert ours == theirs


def test_a_local_folder_named_like_a_hub_id_is_the_folder(tiny_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--text-encoder tinyclip`` beside a folder ``tinyclip``: online, with the Hub unreachable, it
    loads the folder rather than saying that the Hub id is not cached."""
    import socket

    import huggingface_hub.constants

    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.chdir(tiny_clip.parent)
    monkeypatch.delenv("RAMTAG_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    encoder = TextEncoder(tiny_clip.name)
    assert encoder.encode(["a cat"]).shape == (1, encoder.width)
    assert encoder.fingerprint == encoder_fingerprint(str(tiny_clip))
