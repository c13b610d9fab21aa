"""The two files through which ``describe`` and the tagger meet.

Descriptions: JSON, a list of single-key objects ``[{"<tag>": ["text", ...]}, ...]``, exactly the
layout of the official ``openimages_rare_200_llm_tag_descriptions.json``, so the official code reads
ours and we read theirs. A plain ``{"<tag>": [...]}`` object is read as well.

Label embeddings: safetensors with one float32 tensor ``label_embed`` of shape ``(tags,
descriptions, width)``, each row L2-normalised, and in the metadata the tag names (JSON), the text
encoder and the sha256 of the descriptions they came from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import AtomicFile
from ..errors import OutputError, VocabularyError

if TYPE_CHECKING:
    import torch

    from .encoder import TextEncoder

EMBEDDINGS_FORMAT = "ramtag.label_embeddings"
EMBEDDINGS_VERSION = "1"
TENSOR_NAME = "label_embed"

Descriptions = dict[str, list[str]]


def parse_descriptions(data: object, source: str) -> Descriptions:
    """Check and order the decoded JSON; every tag needs at least one non-empty text."""
    if isinstance(data, Mapping):
        items = list(data.items())
    elif isinstance(data, list):
        items = []
        for number, entry in enumerate(data):
            if not isinstance(entry, Mapping) or len(entry) != 1:
                raise VocabularyError(
                    f"{source}: entry {number} is not a one-key object {{\"tag\": [descriptions]}}"
                )
            items.extend(entry.items())
    else:
        raise VocabularyError(f"{source}: expected a list of {{\"tag\": [descriptions]}} objects")
    result: Descriptions = {}
    for tag, texts in items:
        name = str(tag).strip()
        if not name:
            raise VocabularyError(f"{source}: a tag has an empty name")
        if name in result:
            raise VocabularyError(f"{source}: the tag {name!r} appears twice")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(text, str) for text in texts):
            raise VocabularyError(f"{source}: the descriptions of {name!r} are not a list of strings")
        if not texts:
            raise VocabularyError(f"{source}: the tag {name!r} has no descriptions")
        result[name] = list(texts)
    if not result:
        raise VocabularyError(f"{source}: no tags in the descriptions file")
    return result


def read_descriptions(path: Path) -> Descriptions:
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise VocabularyError(f"{path}: descriptions file not found; check the path") from None
    except OSError as exc:
        raise VocabularyError(f"{path}: cannot read the descriptions file ({exc.strerror})") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise VocabularyError(f"{path}: not a JSON descriptions file ({exc})") from None
    return parse_descriptions(data, str(path))


def descriptions_json(descriptions: Descriptions) -> str:
    """The official layout; UTF-8 kept readable, since Python's ``json`` reads it either way."""
    return json.dumps(
        [{tag: texts} for tag, texts in descriptions.items()], ensure_ascii=False, indent=3
    ) + "\n"


def descriptions_sha256(descriptions: Descriptions) -> str:
    """A hash of the content alone (tags, texts, order), independent of formatting."""
    canonical = json.dumps(list(descriptions.items()), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with AtomicFile(path) as pending:
            write(pending.path)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror})") from None


def write_descriptions(path: Path, descriptions: Descriptions) -> None:
    text = descriptions_json(descriptions)
    _atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@dataclass(frozen=True)
class LabelEmbeddings:
    """Open-set tags with their description embeddings ``(T, D, width)``."""

    tags: tuple[str, ...]
    embeddings: torch.Tensor
    text_encoder: str
    descriptions_sha256: str = ""

    def __post_init__(self) -> None:
        if self.embeddings.dim() != 3 or self.embeddings.shape[0] != len(self.tags):
            raise VocabularyError(
                f"label embeddings of shape {tuple(self.embeddings.shape)} do not fit {len(self.tags)} "
                "tags; expected (tags, descriptions, width)"
            )


def embed_descriptions(descriptions: Descriptions, encoder: TextEncoder) -> LabelEmbeddings:
    """Every description embedded on its own; all tags need the same number of them."""
    counts = {len(texts) for texts in descriptions.values()}
    if len(counts) != 1:
        fewest = min(descriptions, key=lambda tag: len(descriptions[tag]))
        raise VocabularyError(
            f"the tags have different numbers of descriptions ({min(counts)} for {fewest!r} to "
            f"{max(counts)}); RAM++ needs the same number for every tag"
        )
    per_tag = counts.pop()
    flat = [text for texts in descriptions.values() for text in texts]
    vectors = encoder.encode(flat)
    return LabelEmbeddings(
        tags=tuple(descriptions),
        embeddings=vectors.reshape(len(descriptions), per_tag, -1).contiguous(),
        text_encoder=encoder.name,
        descriptions_sha256=descriptions_sha256(descriptions),
    )


def write_embeddings(path: Path, embedded: LabelEmbeddings) -> None:
    from safetensors.torch import save_file

    metadata = {
        "format": EMBEDDINGS_FORMAT,
        "version": EMBEDDINGS_VERSION,
        "tags": json.dumps(list(embedded.tags), ensure_ascii=False),
        "text_encoder": embedded.text_encoder,
        "descriptions_sha256": embedded.descriptions_sha256,
    }
    tensors = {TENSOR_NAME: embedded.embeddings.float().contiguous()}
    _atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def read_embeddings(path: Path) -> LabelEmbeddings:
    from safetensors import SafetensorError, safe_open

    if not Path(path).is_file():
        raise VocabularyError(f"{path}: label embeddings file not found; check the path")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != EMBEDDINGS_FORMAT or TENSOR_NAME not in handle.keys():
                raise VocabularyError(
                    f"{path}: not a ramtag label-embeddings file; make one with `ramtag describe --embed`"
                )
            tensor = handle.get_tensor(TENSOR_NAME).float()
    except (SafetensorError, OSError) as exc:
        raise VocabularyError(f"{path}: not a readable safetensors file ({exc})") from None
    if metadata.get("version") != EMBEDDINGS_VERSION:
        raise VocabularyError(f"{path}: written by another ramtag version; run `ramtag describe --embed` again")
    try:
        tags = json.loads(metadata["tags"])
    except (KeyError, ValueError):
        raise VocabularyError(f"{path}: the tag names in its metadata are missing or damaged") from None
    return LabelEmbeddings(
        tags=tuple(str(tag) for tag in tags),
        embeddings=tensor,
        text_encoder=metadata.get("text_encoder", ""),
        descriptions_sha256=metadata.get("descriptions_sha256", ""),
    )


def embeddings_path_for(descriptions_path: Path) -> Path:
    """Where ``--embed`` puts the embeddings: next to the JSON, same name, ``.safetensors``."""
    return Path(descriptions_path).with_suffix(".safetensors")


def read_tag_names(lines: Sequence[str]) -> list[str]:
    """Tag names from a text file's lines: blank lines and ``#`` comments skipped."""
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
