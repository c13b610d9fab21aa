"""Host memory: hand a batch's activations back to the system once the batch is done.

glibc serves allocations below its *mmap threshold* from the heap and keeps freed heap memory for
reuse, and it raises that threshold (up to 32 MB) every time a larger block is freed. A batch through
the full-size Swin frees hundreds of megabytes of activations in blocks of a few to a few tens of
megabytes, so after the first batch they all come from the heap, which then stays as large as the
largest batch's working set, fragmented. A fixed threshold of a few megabytes gives each activation
its own mapping, returned on free: on the full-size RAM++ at batch 4 (fp32, CPU) the peak RSS went
from 2.75-2.82 GB to 2.50-2.52 GB (benchmarks/README.md has the measurement).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
DEFAULT_THRESHOLD = 4 << 20

_applied: int | None = None


def release_activations_promptly(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Make allocations of ``threshold`` bytes or more bypass the heap; True when it took effect.

    Process-wide and idempotent. Only glibc has the knob; elsewhere (macOS, Windows, musl) this
    does nothing. A user who tunes glibc through ``MALLOC_MMAP_THRESHOLD_`` keeps their setting.
    """
    global _applied
    if _applied == threshold:
        return True
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    libc = _glibc()
    if libc is None or libc.mallopt(_M_MMAP_THRESHOLD, threshold) != 1:
        return False
    _applied = threshold
    return True


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it; musl's mallopt does nothing
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc
