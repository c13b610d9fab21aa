"""The CLIP text tower that turns descriptions into the label embeddings RAM++ was trained with.

RAM++'s built-in tags were embedded with OpenAI's CLIP ViT-B/16 text encoder, so open-set tags must
be too; the Hugging Face port ``openai/clip-vit-base-patch16`` is the same network. What has to be
matched by hand is the tokenizer's text cleaning: OpenAI's runs ``ftfy.fix_text`` and HTML
unescaping before tokenising, and the transformers 5 (fast) tokenizer does neither. Truncation to
77 tokens keeps the end-of-text token, whose hidden state is the text's embedding. Everything runs
in fp32: these vectors are computed once and reused, so there is nothing to gain from less.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import ResourceUnavailableError, UsageError
from ..paths import check_model_name, offline

DEFAULT_TEXT_ENCODER = "openai/clip-vit-base-patch16"
CONTEXT_LENGTH = 77
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """No transformers progress bar while loading: only the CLI decides what the terminal shows."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def clean_text(text: str) -> str:
    """OpenAI CLIP's cleaning: repair mojibake, unescape HTML (twice), collapse whitespace."""
    import ftfy

    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return re.sub(r"\s+", " ", text).strip()


def encoder_fingerprint(name: str) -> str:
    """What identifies an encoder's weights without loading it: the Hub id, or a folder's file hash."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return name
    from ..hashing import sha256_file

    for filename in _WEIGHT_FILES:
        if (folder / filename).is_file():
            return f"{folder.resolve()}@{sha256_file(folder / filename)}"
    return str(folder.resolve())


def check_encoder_available(name: str) -> None:
    """A Hub text encoder whose files are not all cached while the Hub cannot be reached (or ramtag is
    offline): said at once, before any LLM request or the Hub client's retries. A folder passes."""
    if Path(name).expanduser().is_dir():
        return
    from huggingface_hub import constants, try_to_load_from_cache

    from ..model.needed import unreachable

    try:
        cached = {file: try_to_load_from_cache(name, file) is not None  # (or known not to be on the Hub)
                  for file in ("config.json", "tokenizer_config.json", "tokenizer.json", "vocab.json")}
    except ValueError as exc:  # the Hub client's HFValidationError: no valid id, and no folder
        raise UsageError(f"--text-encoder {name}: no such folder, and not a Hugging Face id "
                         f"({str(exc).splitlines()[0][:120]})") from None
    missing = [what for what, files in (("configuration", ["config.json"]),
                                        ("tokenizer", ["tokenizer_config.json", "tokenizer.json", "vocab.json"]))
               if not any(cached[file] for file in files)]
    if not missing:
        return
    problem = "ramtag is offline: HF_HUB_OFFLINE or RAMTAG_OFFLINE is set" if offline() else unreachable(constants.ENDPOINT)
    if problem is not None:
        folder = Path(constants.HF_HUB_CACHE) / f"models--{name.replace('/', '--')}"
        what = "is not cached" if len(missing) == 2 else f"is cached without its {missing[0]}"
        fetch = "run `ramtag models download --text-encoder`" if name == DEFAULT_TEXT_ENCODER else \
            "run this command (it downloads the encoder)"
        raise ResourceUnavailableError(
            f"the text encoder {name} {what} (looked in {folder}) and cannot be downloaded ({problem}); {fetch} "
            "on a connected machine and copy its Hugging Face cache (HF_HOME) here, or pass --text-encoder with a "
            "local folder holding a CLIP text model and its tokenizer"
        )


class TextEncoder:
    """``CLIPTextModelWithProjection`` and its tokenizer, from a Hub id or a local folder."""

    def __init__(self, name: str = DEFAULT_TEXT_ENCODER, *, device: str | torch.device = "cpu") -> None:
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        self.name = name
        check_model_name(name, "--text-encoder")
        local = Path(name).expanduser().is_dir()  # a folder named like a Hub id ("tinyclip") is the folder
        source = str(Path(name).expanduser()) if local else name
        check_encoder_available(name)
        try:
            with _quiet_loading():
                self.tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline())
                self.model = CLIPTextModelWithProjection.from_pretrained(
                    source, dtype=torch.float32, local_files_only=offline()
                )
        except OSError as exc:
            where = "is not cached and ramtag is offline" if offline() else "could not be loaded"
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise ResourceUnavailableError(
                f"the text encoder {name!r} {where} ({first}); pass --text-encoder with a local "
                "folder holding a CLIP text model and its tokenizer"
            ) from None
        except ValueError as exc:
            raise UsageError(f"{name!r} is not a CLIP text encoder ({str(exc)[:160]})") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # pads are masked and never pooled
        self.device = torch.device(device)
        self.model.to(self.device).eval()
        self.fingerprint = encoder_fingerprint(name)
        self.max_length = min(CONTEXT_LENGTH, self.model.config.max_position_embeddings)

    @property
    def width(self) -> int:
        return int(self.model.config.projection_dim)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Cleaned, truncated to 77 tokens with start and end-of-text kept, padded to the longest."""
        return self.tokenizer(
            [clean_text(text) for text in texts],
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, batch_size: int = 256) -> torch.Tensor:
        """``(N, width)`` float32, each row L2-normalised on its own."""
        rows = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenize(texts[start : start + batch_size]).to(self.device)
            embeds = self.model(**tokens).text_embeds.float()
            rows.append(F.normalize(embeds, dim=-1).cpu())
        if not rows:
            return torch.zeros(0, self.width)
        return torch.cat(rows)
