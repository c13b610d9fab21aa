"""Host memory: hand a batch's activations back to the system once the batch is done.

glibc serves allocations below its *mmap threshold* from the heap and keeps freed heap memory for
reuse, and it raises that threshold (up to 32 MB) every time a larger block is freed. A batch of
several images through the full-size Swin frees hundreds of megabytes of activations in blocks of a
few to a few tens of megabytes, so after the first batch they all come from the heap, which then
stays as large as the largest batch's working set, fragmented. A fixed threshold of a few megabytes
gives each activation its own mapping, returned on free: on the full-size RAM++ at batch 4 (fp32,
CPU) the peak RSS went from 2.75-2.82 GB to 2.50-2.52 GB (README's benchmarking notes).

Each mapping is paid for in page faults, though: the kernel zeroes every page again for every
activation of every batch. With one image per batch (the CPU default) the heap holds one image's
activations and little is saved: in ``ramtag bench --precision fp32 --batch-size 1`` on 6 photos, a
4 MB threshold took 1.97-2.04 M page faults and 2.06 GB at the peak against 1.15-1.25 M and 2.11 GB
with glibc's 32 MB ceiling, and ran 10-12% slower in each of three alternating pairs. So a batch of
one image keeps the 32 MB ceiling, fixed from the start; batches of several get 4 MB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
DEFAULT_THRESHOLD = 4 << 20  # batches of several images
ONE_IMAGE_THRESHOLD = 32 << 20  # glibc's own ceiling on 64-bit systems

_applied: int | None = None


def threshold_for(batch_size: int) -> int:
    """The mmap threshold for batches of ``batch_size`` images (see the module's docstring)."""
    return ONE_IMAGE_THRESHOLD if batch_size <= 1 else DEFAULT_THRESHOLD


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
