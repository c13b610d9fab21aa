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


_MADV_DONTNEED = 4
_PRESENT, _FILE_PAGE = 1 << 63, 1 << 61  # /proc/PID/pagemap entry flags


class FilePages:
    """Unmaps unchanged pages of mapped files, such as weights read from a memory-mapped checkpoint
    that were copied and will not be read again (``release``); a context manager.

    The pages stay in the system's file cache, and one read again comes back from the file: only
    pages unchanged since they were mapped are touched, so what memory holds stays the same. A region
    not wholly inside one file mapping (as the process's mappings were on entering), or holding a
    page written since it was mapped (a private copy), swapped out or not read yet, is left as it
    is. Linux only; elsewhere, and wherever ``/proc`` cannot be read, nothing is released.
    """

    def __enter__(self) -> FilePages:
        self._pagemap = None
        if sys.platform.startswith("linux"):
            try:
                self._mappings = _file_mappings()
                self._page = os.sysconf("SC_PAGE_SIZE")
                self._madvise = ctypes.CDLL(None, use_errno=True).madvise
                self._madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
                # Unbuffered: a buffer would hand back entries read before an earlier release.
                self._pagemap = open("/proc/self/pagemap", "rb", buffering=0)  # noqa: SIM115 - closed on exit
            except (OSError, AttributeError, ValueError):
                self._pagemap = None
        self.released = 0
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pagemap is not None:
            self._pagemap.close()

    def release(self, address: int, length: int) -> None:
        """Unmap the whole pages of ``length`` bytes at ``address`` if they qualify (above)."""
        if self._pagemap is None:
            return
        import numpy as np

        page = self._page
        start, end = -(-address // page) * page, (address + length) // page * page
        if end <= start or not any(low <= start and end <= high for low, high in self._mappings):
            return
        try:
            self._pagemap.seek(start // page * 8)
            entries = np.frombuffer(self._pagemap.read((end - start) // page * 8), dtype=np.uint64)
        except (OSError, ValueError):
            return
        # Every page present and a page of the file: anything else (a private copy, a page swapped
        # out, or a kernel that hides these flags) leaves the region alone.
        clean = np.uint64(_PRESENT | _FILE_PAGE)
        if len(entries) != (end - start) // page or not ((entries & clean) == clean).all():
            return
        if self._madvise(start, end - start, _MADV_DONTNEED) == 0:
            self.released += end - start


def _file_mappings() -> list[tuple[int, int]]:
    """(start, end) of this process's mappings of files (``/proc/self/maps``)."""
    found = []
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[4] != "0" and fields[5].startswith("/"):
                low, high = fields[0].split("-")
                found.append((int(low, 16), int(high, 16)))
    return found
