"""The allocator setting that keeps host memory flat: it must change where glibc puts blocks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

glibc_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# In a fresh interpreter, for each step of argv: apply the setting for batches of N images (or
# none: "default"), optionally free a 24 MB block first ("free"), then count how many bytes a block
# of M megabytes adds to glibc's mmapped total: 0 when the heap serves it. glibc's own threshold
# starts at 128 kB and rises to the size of the largest block freed.
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
    from ramtag.hostmem import release_activations_promptly, threshold_for
    for step in sys.argv[1:]:
        batch, free, megabytes = step.split(":")
        if batch != "default":
            assert release_activations_promptly(threshold_for(int(batch)))
        if free == "free":
            libc.free(libc.malloc(24 << 20))
        before = libc.mallinfo2().hblkhd
        block = libc.malloc(int(megabytes) << 20)
        print(libc.mallinfo2().hblkhd - before)
        libc.free(block)
    """
)


def _mapped_bytes(*steps: str) -> list[int]:
    done = subprocess.run([sys.executable, "-c", PROBE, *steps], capture_output=True, text=True, check=True)
    return [int(line) for line in done.stdout.split()]


@glibc_only
def test_large_blocks_get_their_own_mapping_for_batches_of_several_images() -> None:
    assert _mapped_bytes("default:free:8") == [0]  # glibc's own: a large block freed raised the threshold
    assert _mapped_bytes("4:free:8") >= [8 << 20]  # fixed at 4 MB: mapped, and returned on free


@glibc_only
def test_one_image_a_batch_keeps_its_activations_in_the_heap_from_the_first() -> None:
    assert _mapped_bytes("default:none:8") >= [8 << 20]  # glibc's own, before any large free: mapped
    assert _mapped_bytes("1:none:8") == [0]  # fixed at 32 MB from the start
    assert _mapped_bytes("1:none:40") >= [40 << 20]


@glibc_only
def test_the_setting_follows_the_batch_size_within_one_process() -> None:
    first, then, again = _mapped_bytes("4:none:8", "1:none:8", "4:none:8")
    assert first >= 8 << 20 and then == 0 and again >= 8 << 20


@glibc_only
def test_a_users_own_malloc_setting_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from ramtag import hostmem

    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    monkeypatch.setattr(hostmem, "_applied", None)
    assert hostmem.release_activations_promptly() is False


@glibc_only
def test_unchanged_pages_of_a_mapped_checkpoint_are_released_and_read_back_the_same(tmp_path) -> None:
    import os

    import torch
    from safetensors.torch import load_file, save_file

    from ramtag.hostmem import FilePages

    page = os.sysconf("SC_PAGE_SIZE")
    count = 1 << 20
    # c and d small (64 pages): the look at c's pages covers d's too, which a buffer would keep.
    tensors = {name: torch.full((count if name in "ab" else count // 16,), float(i)) for i, name in enumerate("abcd")}
    tensors["a"] = torch.arange(count, dtype=torch.float32)
    save_file(tensors, tmp_path / "w.safetensors")
    weights = load_file(tmp_path / "w.safetensors")  # memory-mapped: its pages are the file's
    a, b, c, d = (weights[name] for name in "abcd")
    expected = {name: float(t.sum()) for name, t in weights.items()}  # every page read, so present
    b[12345] = 7.0  # a written page: a private copy, which must never be dropped
    anonymous = torch.arange(count, dtype=torch.float32)
    with FilePages() as pages:
        pages.release(a.data_ptr(), a.numel() * 4)
        dropped = pages.released
        pages.release(b.data_ptr(), b.numel() * 4)
        pages.release(anonymous.data_ptr(), anonymous.numel() * 4)
        assert pages.released == dropped  # b (one page written) and the anonymous tensor left alone
        pages.release(c.data_ptr(), c.numel() * 4)
        d[len(d) // 2] = 9.0  # written after the entries around it were last looked at
        pages.release(d.data_ptr(), d.numel() * 4)
    assert dropped >= a.numel() * 4 - 2 * page  # all of a but the pages it shares with neighbours
    assert pages.released >= dropped + c.numel() * 4 - 2 * page  # a and c
    assert float(a.sum()) == expected["a"] and float(c.sum()) == expected["c"]  # read back from the file
    assert float(b.sum()) == expected["b"] - 1.0 + 7.0 and b[12345] == 7.0
    assert d[len(d) // 2] == 9.0
    assert torch.equal(anonymous, torch.arange(count, dtype=torch.float32))
