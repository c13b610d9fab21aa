"""ramtag: tag image collections with RAM++ (Recognize Anything Plus) and RAM."""

from __future__ import annotations

import time

# When ramtag was first imported (the interpreter itself starts ~0.05 s earlier): ``ramtag bench``
# measures start-up from here, so the seconds spent importing torch and timm are counted.
IMPORTED_AT = time.perf_counter()

__version__ = "0.1.0"

__all__ = ["Tagger", "TagResult", "__version__", "load_tagger"]


def __getattr__(name: str):  # keep ``import ramtag`` light: torch loads on first use
    if name in {"Tagger", "TagResult", "load_tagger"}:
        from . import tagger

        return getattr(tagger, name)
    raise AttributeError(name)
