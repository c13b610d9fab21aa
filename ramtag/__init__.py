"""ramtag: tag image collections with RAM++ and RAM."""

from __future__ import annotations

__version__ = "0.1.0"
