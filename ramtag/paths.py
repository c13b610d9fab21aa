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
