"""The allocator setting that keeps host memory flat: it must change where glibc puts blocks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# In a fresh interpreter: free a 24 MB block (glibc then raises its mmap threshold to 24 MB), then
# count how many bytes an 8 MB block adds to glibc's mmapped total. The heap serves it by default;
# with the setting for batches of several images it gets its own mapping; for one image, the heap
# serves it from the first block on (glibc's ceiling, fixed), and a 40 MB block is mapped.
PROBE = textwrap.dedent(
    """
    import ctypes, sys

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    if sys.argv[1] != "default":
        from ramtag.hostmem import release_activations_promptly, threshold_for
        assert release_activations_promptly(threshold_for(int(sys.argv[1])))
        assert release_activations_promptly(threshold_for(int(sys.argv[1])))  # a second call changes nothing
    else:
        libc.free(libc.malloc(24 << 20))
    size = int(sys.argv[2]) << 20
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    print(libc.mallinfo2().hblkhd - before)
    libc.free(block)
    """
)


def _mapped_bytes(mode: str, megabytes: int = 8) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(megabytes)], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


@glibc_only
def test_large_blocks_get_their_own_mapping_once_set() -> None:
    assert _mapped_bytes("default") == 0  # glibc's own behaviour: from the heap, kept after free
    assert _mapped_bytes("4") >= 8 << 20  # batches of several images: mapped, returned on free
    assert _mapped_bytes("1") == 0  # one image a batch: the heap, without a first block to raise it
    assert _mapped_bytes("1", 40) >= 40 << 20


@glibc_only
def test_a_users_own_malloc_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from ramtag import hostmem

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setattr(hostmem, "_applied", None)
    assert hostmem.release_activations_promptly() is False
