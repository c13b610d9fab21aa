"""From a weights file to a ready ``RamModel``: safe read, convert, strict load, cache.

Official ``.pth`` files are read with ``torch.load(weights_only=True)`` (memory-mapped), so no Python
object other than tensors is ever unpickled. The converted weights are cached as safetensors keyed
by the source file's sha256, which makes every later start a plain memory-mapped read.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import AtomicFile
from ..errors import CheckpointError
from ..hashing import sha256_file
from .cached import content_record, converted_dir, converted_metadata
from .config import ModelConfig
from .convert import convert_official, infer_config, unwrap
from .empty import uninitialised
from .network import RamModel

# Bump when RamModel's parameter layout changes, so stale converted caches are not reused.
LAYOUT_VERSION = "2"  # 2: the decoder's feed-forward layers under ``ffn``
KIND_NAMES = {"ram_plus": "RAM++", "ram": "RAM"}


@dataclass(frozen=True)
class LoadInfo:
    """Where the weights came from; enough to record provenance in outputs."""

    path: Path
    sha256: str
    config: ModelConfig
    from_cache: bool


def _fail(path: Path, message: str) -> CheckpointError:
    return CheckpointError(f"{path}: {message}")


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of an official-format file (``.pth``/``.pt``/``.bin`` or ``.safetensors``)."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such checkpoint file; check --checkpoint")
    if path.stat().st_size == 0:
        raise _fail(path, "checkpoint file is empty; download it again")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise _fail(path, f"not a readable safetensors file ({exc}); download it again") from None
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head.startswith(b"PK\x03\x04") and head[:1] != b"\x80":  # a zip archive, or a pickle (legacy)
        raise _fail(path, f"not a PyTorch checkpoint (the file holds {_what(head)}); check --checkpoint")
    try:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc).lower():
                raise
            with warnings.catch_warnings():  # torch's note on a legacy pickle's protocol: ours is the one to see
                warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
                raw = torch.load(path, map_location="cpu", weights_only=True)  # legacy, non-zip format
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise _fail(
                path,
                "holds Python objects besides tensors, and ramtag never unpickles those; "
                "use the released checkpoint or re-save it as a plain state dict",
            ) from None
        raise _fail(path, "not a PyTorch checkpoint; check --checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - any failure to parse a foreign file means "not usable"
        size = path.stat().st_size
        raise _fail(
            path,
            f"not a complete PyTorch checkpoint ({size:,} bytes; {str(exc).splitlines()[0][:80]}); "
            "it may be truncated: download it again",
        ) from None
    if not isinstance(raw, dict):
        raise _fail(path, "does not hold a state dict; not a RAM/RAM++ checkpoint")
    return unwrap(raw)


def _what(head: bytes) -> str:
    """What a file that is not a checkpoint looks like, from its first bytes."""
    for magic, kind in ((b"\xff\xd8\xff", "a JPEG image"), (b"\x89PNG", "a PNG image"), (b"{", "JSON"),
                        (b"<", "HTML or XML"), (b"\x1f\x8b", "gzip data")):
        if head.startswith(magic):
            return kind
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "data of another kind"
    return "text"


def build_model(config: ModelConfig) -> RamModel:
    """A network with unwritten weights for ``_strict_load`` to fill (``empty.py`` says why not on
    the meta device); the strict load assigns the checkpoint's tensors in their place."""
    with uninitialised():
        model = RamModel(config)
    return model.eval().requires_grad_(False)


def _strict_load(model: RamModel, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = set(model.state_dict())
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise _fail(
            path,
            f"weights do not fit the {KIND_NAMES[model.config.kind]} architecture: "
            + ", ".join(parts)
            + "; is this a RAM/RAM++ checkpoint?",
        )
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines() if "size mismatch" in line), "")
        raise _fail(path, f"tensor shapes do not fit the inferred architecture: {detail[:160]}") from None


def _cache_path(sha256: str, num_tags: int | None, image_size: int | None) -> Path:
    tail = f"t{num_tags or 'auto'}-s{image_size or 'auto'}-v{LAYOUT_VERSION}"
    return converted_dir() / f"{sha256}-{tail}.safetensors"


def _cached_conversion(sha256: str, num_tags: int | None, image_size: int | None) -> Path | None:
    """The cached conversion of a checkpoint that serves this request: one copy of the weights for
    a run that names its tag list and a bench that does not. ``None`` asks for what the checkpoint
    implies, which a conversion records (``inferred``: ``tags``, ``size``; an older one says it by
    ``tauto``, ``sauto`` in its name)."""
    exact = _cache_path(sha256, num_tags, image_size)
    if exact.is_file():
        return exact
    for candidate in sorted(exact.parent.glob(f"{sha256}-t*-s*-v{LAYOUT_VERSION}.safetensors")):
        metadata = converted_metadata(candidate)
        if metadata is None:
            continue
        inferred = set(metadata.get("inferred", "").split(","))
        inferred |= {"tags", "size"} if metadata.get("as_inferred") == "1" else set()  # as one version wrote it
        inferred |= {"tags"} if "-tauto-" in candidate.name else set()
        inferred |= {"size"} if "-sauto-" in candidate.name else set()
        try:
            config = ModelConfig.from_json(metadata["config"])
        except (KeyError, ValueError, TypeError):
            continue
        if (config.num_tags == num_tags if num_tags else "tags" in inferred) and (
                config.image_size == image_size if image_size else "size" in inferred):
            return candidate
    return None


def _inferred(state: dict[str, torch.Tensor], config: ModelConfig) -> list[str]:
    """Which of ``config``'s tag count and input size the checkpoint implies without being told."""
    found = []
    try:
        if infer_config(state, image_size=config.image_size) == config:
            found.append("tags")
    except CheckpointError:
        pass
    try:
        if infer_config(state, num_tags=config.num_tags) == config:
            found.append("size")
    except CheckpointError:
        pass
    return found


def save_converted(model: RamModel, dest: Path, *, source_sha256: str = "", inferred: Sequence[str] = ()) -> None:
    """Write ramtag-layout weights with their config (atomic: temp file, then rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": "ramtag",
        "layout_version": LAYOUT_VERSION,
        "config": model.config.to_json(),
        "source_sha256": source_sha256,
        "inferred": ",".join(inferred),  # what a request that names neither finds here
    }
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with AtomicFile(dest, durable=False) as pending:  # a cache: rebuilt from the .pth if lost
        save_file(state, str(pending.path), metadata=metadata)
    content_record(dest).write_text(sha256_file(dest) + "\n", encoding="ascii")


def _intact(path: Path) -> bool:
    """Whether a converted copy holds what was written (its sha256, recorded beside it, is
    re-hashed only when its size or time changed): a disk error, or a copy of the cache cut off or
    damaged, is made again from the .pth instead of giving scores that are not numbers."""
    try:
        expected = content_record(path).read_text(encoding="ascii").strip()
    except OSError:
        return True  # converted before ramtag recorded the sha256
    try:
        return sha256_file(path) == expected
    except OSError:
        return False


def _load_converted(path: Path, metadata: dict[str, str]) -> RamModel:
    if metadata.get("layout_version") != LAYOUT_VERSION:
        raise _fail(path, "converted by another ramtag version; convert the original .pth again")
    config = ModelConfig.from_json(metadata["config"])
    model = build_model(config)
    _strict_load(model, load_file(str(path)), path)
    return model


def load_model(
    path: Path,
    *,
    num_tags: int | None = None,
    kind: str | None = None,
    image_size: int | None = None,
    use_cache: bool = True,
) -> tuple[RamModel, LoadInfo]:
    """Load any official RAM/RAM++ checkpoint (or a ramtag-converted one).

    ``num_tags`` is the tag list's length (it fixes RAM++'s descriptions per tag); ``kind`` makes
    a RAM file given where RAM++ was asked for (or the reverse) a clear error.
    """
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such checkpoint file; check --checkpoint")
    sha256 = sha256_file(path)
    metadata = converted_metadata(path)
    from_cache = False
    if metadata is not None:
        model = _load_converted(path, metadata)
    else:
        cached = _cached_conversion(sha256, num_tags, image_size) if use_cache else None
        cached_meta = converted_metadata(cached) if cached is not None else None
        if cached is not None and cached_meta is not None and not _intact(cached):
            cached_meta = None  # damaged since: made again below
        if cached is not None and cached_meta is not None:
            try:
                model = _load_converted(cached, cached_meta)
                from_cache = True
            except (CheckpointError, SafetensorError, OSError):  # cut off, unreadable: made again below
                cached_meta = None
        if cached_meta is None:
            state = read_checkpoint(path)
            try:
                config = infer_config(state, num_tags=num_tags, image_size=image_size)
            except CheckpointError as exc:
                raise _fail(path, str(exc)) from None
            inferred = _inferred(state, config)
            _check_kind(path, config.kind, kind)
            model = build_model(config)
            _strict_load(model, convert_official(state, model), path)
            if use_cache:
                try:  # named by what it holds: found again by a request with or without a tag list
                    save_converted(model, _cache_path(sha256, config.num_tags, config.image_size),
                                   source_sha256=sha256, inferred=inferred)
                except (OSError, SafetensorError):  # safetensors' own error for a full disk
                    pass  # an unwritable cache only costs a slower next start
    _check_kind(path, model.config.kind, kind)
    _check_layout(path, model.config)
    if num_tags is not None and model.config.num_tags != num_tags:
        raise _fail(
            path,
            f"has {model.config.num_tags} tags but the tag list has {num_tags}; "
            "use the tag list that belongs to this checkpoint",
        )
    return model, LoadInfo(path=path, sha256=sha256, config=model.config, from_cache=from_cache)


def _check_layout(path: Path, config: ModelConfig) -> None:
    """A RAM++ read with other than the released 51 descriptions a tag where 51 would fit too: most
    likely a tag list that is not the checkpoint's (half of one reads as 102 descriptions a tag,
    and scores nonsense), said on every load; a checkpoint trained so loads all the same."""
    import warnings

    from ..errors import RamtagWarning
    from .convert import DEFAULT_DESCRIPTIONS_PER_TAG as RELEASED

    rows = config.num_tags * config.descriptions_per_tag
    if config.kind == "ram_plus" and rows % RELEASED == 0 and config.descriptions_per_tag != RELEASED:
        warnings.warn(
            f"{path} holds {rows} description embeddings, {rows // RELEASED} tags of {RELEASED} as released, but "
            f"the tag list has {config.num_tags} tags, read as {config.descriptions_per_tag} descriptions a tag: "
            "is the tag list this checkpoint's?", RamtagWarning, stacklevel=3)


def _check_kind(path: Path, found: str, wanted: str | None) -> None:
    if wanted and wanted != found:
        raise _fail(
            path,
            f"is a {KIND_NAMES[found]} checkpoint but {KIND_NAMES.get(wanted, wanted)} was asked for; "
            f"pass --model {found} or a {KIND_NAMES.get(wanted, wanted)} checkpoint",
        )
