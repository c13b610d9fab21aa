"""Open-set vocabularies: what ``--tags`` names, turned into tag names and label embeddings.

``--tags`` takes a descriptions JSON (ours or the official one), a label-embeddings file from
``ramtag describe --embed``, a text file of tag names, or a comma list ``"cat wearing a hat,red
umbrella"``; names without descriptions get ramtag's template descriptions. Embeddings computed here
are cached by the content of the descriptions and the identity of the text encoder, so the CLIP text
tower runs once per vocabulary.

RAM++ keeps every description embedding and re-weights them per image. RAM has one embedding per
tag: as the official RAM open-set code does with its prompt templates, the normalised embeddings of
a tag's texts are averaged and the mean normalised again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F

from .describe.files import (
    Descriptions,
    LabelEmbeddings,
    embed_descriptions,
    parse_descriptions,
    read_descriptions,
    read_embeddings,
    read_tag_names,
    write_embeddings,
)
from .describe.prompts import template_descriptions
from .errors import UsageError, VocabularyError
from .model.labels import VOCAB_MODES, TagVocabulary, read_lines
from .paths import cache_dir

if TYPE_CHECKING:
    from .tagger import Tagger

# The official open-set scripts use 0.5 for unseen tags: their scores run lower than trained ones.
OPEN_SET_THRESHOLD = 0.5
_FILE_SUFFIXES = {".json", ".safetensors", ".txt"}


@dataclass(frozen=True)
class OpenSet:
    """Open-set tags ready for a model: names, embeddings ``(T, D, width)``, and where they came from."""

    embedded: LabelEmbeddings
    source: str

    @property
    def tags(self) -> tuple[str, ...]:
        return self.embedded.tags

    def vocabulary(self, threshold: float | None = None, thresholds: Sequence[float] | None = None) -> TagVocabulary:
        """The tags with ``thresholds`` (one per tag), else ``threshold`` for all (default 0.5)."""
        if thresholds is not None:
            if len(thresholds) != len(self.tags):
                raise UsageError(f"{len(thresholds)} thresholds for {len(self.tags)} open-set tags")
            return TagVocabulary.from_names(self.tags, thresholds)
        value = OPEN_SET_THRESHOLD if threshold is None else threshold
        return TagVocabulary.from_names(self.tags, [value] * len(self.tags))

    def label_embed(self, kind: str) -> torch.Tensor:
        """What the model takes: all descriptions for RAM++, their normalised mean for RAM."""
        embeddings = self.embedded.embeddings.float()
        if kind == "ram":
            return F.normalize(embeddings.mean(dim=1), dim=-1).unsqueeze(1)
        return embeddings

    def provenance(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "text_encoder": self.embedded.text_encoder,
            "descriptions_sha256": self.embedded.descriptions_sha256,
        }


def parse_tag_list(text: str) -> list[str]:
    """``"a, b ,c"`` → ``["a", "b", "c"]``; empty items dropped."""
    return [name.strip() for name in text.split(",") if name.strip()]


def read_spec(spec: str | Path) -> Descriptions | LabelEmbeddings:
    """What ``--tags`` names: descriptions to embed, or embeddings ready to use."""
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix == ".safetensors":
            return read_embeddings(path)
        if path.suffix == ".txt":
            names = read_tag_names(read_lines(path, "tag list"))
            if not names:
                raise VocabularyError(f"{path}: no tag names in the file")
            return _from_names(names, str(path))
        return read_descriptions(path)
    if path.suffix in _FILE_SUFFIXES or path.is_dir():
        raise VocabularyError(
            f"{spec}: no such file; --tags takes a descriptions .json, an embeddings .safetensors, "
            "a .txt of tag names, or tag names separated by commas"
        )
    names = parse_tag_list(str(spec))
    if not names:
        raise UsageError("--tags is empty: give tag names separated by commas, or a file")
    return _from_names(names, "--tags")


def spec_tags(found: Descriptions | LabelEmbeddings) -> tuple[str, ...]:
    """The tag names of what ``read_spec`` found, in order."""
    return found.tags if isinstance(found, LabelEmbeddings) else tuple(found)


def _from_names(names: list[str], source: str) -> Descriptions:
    return parse_descriptions({name: template_descriptions(name) for name in names}, source)


def _cache_path(descriptions: Descriptions, fingerprint: str) -> Path:
    from .describe.files import descriptions_sha256

    key = hashlib.sha256(f"{descriptions_sha256(descriptions)}|{fingerprint}".encode()).hexdigest()
    return cache_dir() / "label_embeddings" / f"{key}.safetensors"


def embed_cached(descriptions: Descriptions, text_encoder: str, *, device: str = "cpu") -> LabelEmbeddings:
    """Embeddings of ``descriptions``, from the cache when this content was embedded before."""
    from .describe.encoder import TextEncoder, encoder_fingerprint

    cached = _cache_path(descriptions, encoder_fingerprint(text_encoder))
    if cached.is_file():
        try:
            found = read_embeddings(cached)
        except VocabularyError:
            found = None  # a damaged cache entry is recomputed
        if found is not None and found.tags == tuple(descriptions):
            return found
    embedded = embed_descriptions(descriptions, TextEncoder(text_encoder, device=device))
    try:
        write_embeddings(cached, embedded)
    except (OSError, RuntimeError):
        pass  # an unwritable cache only costs a recomputation next time
    return embedded


def load_open_set(
    spec: str | Path,
    *,
    text_encoder: str | None = None,
    device: str = "cpu",
    found: Descriptions | LabelEmbeddings | None = None,
) -> OpenSet:
    """The open-set vocabulary ``spec`` names, embedded with ``text_encoder`` where needed
    (``found``: what ``read_spec(spec)`` gave, when already read)."""
    from .describe.encoder import DEFAULT_TEXT_ENCODER

    found = read_spec(spec) if found is None else found
    if isinstance(found, LabelEmbeddings):
        if text_encoder is not None and found.text_encoder and text_encoder != found.text_encoder:
            raise UsageError(
                f"{spec} was embedded with {found.text_encoder!r}, not {text_encoder!r}; "
                "drop --text-encoder or embed the descriptions again"
            )
        return OpenSet(found, str(spec))
    return OpenSet(embed_cached(found, text_encoder or DEFAULT_TEXT_ENCODER, device=device), str(spec))


def open_set_tagger(
    tagger: Tagger,
    open_set: OpenSet,
    *,
    vocab: str = "open",
    threshold: float | None = None,
    thresholds: Sequence[float] | None = None,
) -> Tagger:
    """``tagger`` (a ``Tagger`` with the built-in tags) recognising ``open_set``: alone or with them.

    The open-set tags' thresholds: ``thresholds``, one per tag, else ``threshold`` (default 0.5).
    """
    if vocab not in VOCAB_MODES:
        raise UsageError(f"--vocab must be one of {', '.join(VOCAB_MODES)}, not {vocab!r}")
    if vocab == "both":
        builtin = {name.casefold(): name for name in tagger.vocabulary.tags}  # Cat beside cat: one keyword
        clash = sorted((name, builtin[name.casefold()]) for name in open_set.tags if name.casefold() in builtin)
        if clash:
            shown = ", ".join(repr(name) + ("" if name == known else f" (as {known!r})") for name, known in clash[:5])
            raise UsageError(  # --tags and --vocab both contradict each other: a usage mistake (exit 2)
                f"open-set tags already in the built-in vocabulary: {shown}; "
                "remove them or use --vocab open"
            )
    width, wanted = open_set.embedded.embeddings.shape[-1], tagger.config.text_width
    if width != wanted:
        raise UsageError(f"{open_set.source}: embeddings {width} wide, made by another text encoder than this model "
                         f"was trained with ({wanted} wide: CLIP ViT-B/16); embed the descriptions with it "
                         "(`ramtag describe --embed` without --text-encoder)")
    return tagger.with_open_set(
        open_set.vocabulary(threshold, thresholds),
        open_set.label_embed(tagger.config.kind),
        keep_builtin=vocab == "both",
        provenance=open_set.provenance(),
    )


def tagger_with_descriptions(
    tagger: Tagger,
    spec: str | Path,
    *,
    vocab: str = "open",
    text_encoder: str | None = None,
    threshold: float | None = None,
) -> Tagger:
    """``tagger`` recognising the open-set tags ``spec`` names (``load_tagger(tags=...)`` does this
    with the thresholds file too); the text encoder runs where the tagger does."""
    open_set = load_open_set(spec, text_encoder=text_encoder, device=str(tagger.device))
    return open_set_tagger(tagger, open_set, vocab=vocab, threshold=threshold)
