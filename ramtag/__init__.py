"""ramtag: tag image collections with RAM++ (Recognize Anything Plus) and RAM."""

from __future__ import annotations

from .version import IMPORTED_AT, __version__

__all__ = ["IMPORTED_AT", "Tagger", "TagResult", "__version__", "load_tagger"]


def __getattr__(name: str):  # keep ``import ramtag`` light: torch loads on first use
    if name == "load_tagger":
        from .loading import load_tagger

        return load_tagger
    if name in {"Tagger", "TagResult"}:
        from . import tagger

        return getattr(tagger, name)
    raise AttributeError(name)
