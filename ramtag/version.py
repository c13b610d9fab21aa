"""The version, and when ramtag was first imported (``ramtag bench`` counts start-up from there).

A module of its own so that anything can import it without importing the package's API.
"""

from __future__ import annotations

import time

__version__ = "0.1.0"

# The interpreter itself starts ~0.05 s earlier; the seconds spent importing torch and timm come after.
IMPORTED_AT = time.perf_counter()
