"""Where ramtag keeps downloaded and derived files, and whether it may use the network."""

from __future__ import annotations

import os
from pathlib import Path

_TRUE = {"1", "true", "yes", "on"}


def cache_dir() -> Path:
    """``$RAMTAG_CACHE``, else ``$XDG_CACHE_HOME/ramtag``, else ``~/.cache/ramtag``.

    Weights from the Hugging Face Hub stay in the Hub's own cache (``HF_HOME``); this folder holds
    the official tag lists, converted weights (safetensors) and the file-hash memo.
    """
    explicit = os.environ.get("RAMTAG_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "ramtag"


def offline() -> bool:
    """True when ``RAMTAG_OFFLINE`` or ``HF_HUB_OFFLINE`` is set: never touch the network."""
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in ("RAMTAG_OFFLINE", "HF_HUB_OFFLINE"))


def check_model_name(name: str, option: str) -> None:
    """A model named by a path (``/``, ``./``, ``~``, a trailing ``/``, or more ``/`` than a Hub id's
    one) must be a folder here: said at once, before the Hub client calls it an invalid id."""
    from .errors import UsageError

    text = name.strip()
    path_like = text.startswith(("/", ".", "~")) or text.endswith("/") or text.count("/") > 1 or os.sep in text.replace("/", "")
    if path_like and not Path(text).expanduser().is_dir():
        what = "is a file, not a folder" if Path(text).expanduser().exists() else "no such folder"
        raise UsageError(f"{option} {name}: {what}; give a folder holding a CLIP text model and its tokenizer, "
                         "or a Hugging Face id such as openai/clip-vit-base-patch16")
