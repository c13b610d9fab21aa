"""ramtag: tag image collections with RAM++ (Recognize Anything Plus) and RAM."""

from __future__ import annotations

import os

from .version import IMPORTED_AT, __version__

# RAMTAG_OFFLINE is HF_HUB_OFFLINE for the Hugging Face libraries too, set before they are imported
# (they read it once): otherwise huggingface_hub still makes its own requests at start-up.
if os.environ.get("RAMTAG_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
    os.environ["HF_HUB_OFFLINE"] = "1"  # also over an empty or 0 one: ramtag is offline all the same

__all__ = ["IMPORTED_AT", "Tagger", "TagResult", "__version__", "load_tagger"]


def __getattr__(name: str):  # keep ``import ramtag`` light: torch loads on first use
    if name == "load_tagger":
        from .loading import load_tagger

        return load_tagger
    if name in {"Tagger", "TagResult"}:
        from . import tagger

        return getattr(tagger, name)
    raise AttributeError(name)
