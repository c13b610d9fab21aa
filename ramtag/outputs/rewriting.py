"""A photo rewritten through ExifTool without risk to it: the edit is made on a hidden copy beside
it, which must decode to the very same pixels, takes the original's mode, owner and times, and
only then replaces it by a rename; a copy a killed run left is removed by the next.

``embedded`` decides what to write (keywords and ramtag's record); this module how.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import re
import shutil
import stat
from pathlib import Path

from .. import atomic
from ..errors import OutputError, RamtagError
from ..exiftool import ExifTool, ExifToolError

DIGEST, CURRENT_DIGEST = "Photoshop:IPTCDigest", "File:CurrentIPTCDigest"  # exiftool's -G1 names
EMPTY_DIGEST = hashlib.md5(b"").hexdigest()  # the digest of no IPTC at all


class EmbedError(RamtagError):
    """A photo ramtag leaves as it is: read-only, unreadable, or one exiftool refused."""


def temporary_path(path: Path) -> Path:
    """The hidden copy an edit is made on, beside the photo (walks skip hidden files)."""
    return path.with_name(f".{path.stem}.ramtag-tmp{path.suffix}")


def read_only(path: Path, info: os.stat_result | None = None) -> bool:
    """A file ramtag does not write into: its mode or its owner's rights say so (root counts its mode)."""
    try:
        info = info or os.stat(path)
    except OSError:
        return False  # writing says what is wrong
    return not info.st_mode & stat.S_IWUSR or not os.access(path, os.W_OK)


def read_only_refusal(*, tagging: bool) -> EmbedError:
    """Why a read-only photo is left alone; ``tagging``: for ``run --embed``, which can write a sidecar."""
    return EmbedError("the file is read-only: ramtag does not change it (make it writable with chmod u+w"
                      + (", or write sidecars with --xmp)" if tagging else ")"))


def rewrite(
    tool: ExifTool, path: Path, args: list[str], *, touch: bool, refresh_digest: bool = False, tagging: bool = True
) -> None:
    """Apply exiftool ``args`` to ``path`` safely: on a verified copy renamed over it. A symbolic
    link stays a link: the file it points to is the one rewritten. ``refresh_digest``: bring the
    Photoshop block's IPTC digest up to date afterwards (see ``embedded``'s docstring). ``tagging``:
    for ``run --embed`` (a refusal names sidecars), not ``xmp clean``."""
    path = Path(os.path.realpath(path))
    try:
        info = path.stat()
    except OSError as exc:
        raise EmbedError(f"cannot read it ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        raise EmbedError("not a regular file")
    if read_only(path, info):
        raise read_only_refusal(tagging=tagging)
    folder = path.parent
    free = shutil.disk_usage(folder).free
    if free < info.st_size + (16 << 20):
        raise OutputError(f"not enough free space in {folder or '.'} to rewrite {path.name} safely "
                          f"({_mib(free)} free of the {_mib(info.st_size + (16 << 20))} needed: the copy and a margin): free some space, "
                          "then run again (photos done so far are complete)")
    copy = temporary_path(path)
    remove_stale(path)
    try:
        shutil.copyfile(path, copy)
        try:
            # No -m: a file with damaged metadata is refused rather than "repaired" by dropping a block.
            answer = tool.run("-overwrite_original", *args, copy)
        except ExifToolError as exc:
            raise EmbedError(str(exc)) from None
        if "1 image files updated" not in answer.stdout and "1 image files unchanged" not in answer.stdout:
            problems = answer.errors() or [answer.stderr.strip() or answer.stdout.strip()]
            hint = "; its extension does not match what it holds: rename it" if "looks more like" in problems[0] else ""
            raise EmbedError(f"exiftool could not write it ({problems[0]}){hint}")
        if refresh_digest:
            _refresh_digest(tool, copy)
        _check_pixels(path, copy)
        shutil.copystat(path, copy)  # mode, times and extended attributes (macOS tags, labels)
        if hasattr(os, "chown"):
            try:
                os.chown(copy, info.st_uid, info.st_gid)
            except OSError:
                pass  # only root may give a file away: it stays this user's
        if touch:
            os.utime(copy)
        now = path.stat()
        if (now.st_ino, now.st_size, now.st_mtime_ns) != (info.st_ino, info.st_size, info.st_mtime_ns):
            raise EmbedError("another program changed it while ramtag was writing: left as that program saved it; "
                             "run again to add the tags")
        atomic.replace_durably(copy, path)
    except OSError as exc:
        _discard(copy)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OutputError(f"the disk is full: {path.name} was left unchanged; free some space, then run "
                              "again (photos done so far are complete)") from None
        raise EmbedError(f"cannot write it ({exc.strerror or exc})") from None
    except BaseException:
        _discard(copy)
        raise


def digests(found: dict[str, object]) -> tuple[str, str]:
    """From exiftool's reading of a file (its Photoshop, IPTC and ``CURRENT_DIGEST`` tags): the
    Photoshop block's IPTC digest ("" if none) and the digest of the IPTC the file holds now (of no
    bytes when it has none), as lower-case hex."""
    stored, current = (str(found.get(tag) or "").lower() for tag in (DIGEST, CURRENT_DIGEST))
    if not current and not any(tag.startswith("IPTC:") for tag in found):
        current = EMPTY_DIGEST
    return stored, current


def _read_digests(tool: ExifTool, path: Path) -> tuple[str, str]:
    return digests(tool.read(path, f"-{DIGEST}", f"-{CURRENT_DIGEST}", "-IPTC:all"))


def _refresh_digest(tool: ExifTool, copy: Path) -> None:
    """Set the IPTC digest of ``copy`` to its IPTC's.

    exiftool would move the digest to the end of the Photoshop block, so that ``clean`` could not give
    the file's bytes back: its 16 bytes are overwritten where they are instead, when the resource is
    found exactly once holding the digest exiftool reads; otherwise exiftool writes it. A digest still
    out of date after that leaves the photo as it was (the copy is discarded)."""
    try:
        stored, current = _read_digests(tool, copy)
        if not re.fullmatch("[0-9a-f]{32}", stored) or not re.fullmatch("[0-9a-f]{32}", current) or stored == current:
            return
        if _patch_digest(copy, bytes.fromhex(stored), bytes.fromhex(current)):
            if _read_digests(tool, copy) != (current, current):  # those 16 bytes were not the digest
                raise ExifToolError("the bytes that looked like it were something else")
            return
        tool.run("-overwrite_original", f"-{DIGEST}={current}", copy)
        if _read_digests(tool, copy) != (current, current):
            raise ExifToolError("it still reads as out of date")
    except ExifToolError as exc:
        raise EmbedError(f"exiftool could not update its IPTC digest ({exc}): left unchanged") from None


def _patch_digest(path: Path, stored: bytes, current: bytes) -> bool:
    # A Photoshop image resource: signature, id 0x0425, empty name (padded to 2 bytes), size 16, data.
    resource = re.compile(re.escape(b"8BIM\x04\x25\x00\x00\x00\x00\x00\x10" + stored))
    try:
        with open(path, "r+b") as file, mmap.mmap(file.fileno(), 0) as data:
            found = [match.start() for match in resource.finditer(data)]
            if len(found) != 1:
                return False
            start = found[0] + 12
            data[start:start + 16] = current
            data.flush()
    except (OSError, ValueError):  # a file system without shared writable maps: exiftool writes it
        return False
    return True


def _check_pixels(original: Path, copy: Path) -> None:
    try:
        same = same_pixels(original, copy)
    except Exception as exc:  # noqa: BLE001 - any decoder failure: the photo is left as it was
        raise EmbedError(f"cannot check the rewritten file's pixels ({type(exc).__name__}: {exc}): left unchanged") from None
    if not same:
        raise EmbedError("the rewritten file's pixels differ from the original's: left unchanged "
                         "(please report this file's format)")


def same_pixels(original: Path, copy: Path) -> bool:
    """Whether two files decode to identical pixels (every frame; a DNG's sensor data)."""
    if original.suffix.lower() == ".dng":
        import numpy as np
        import rawpy

        with rawpy.imread(os.fspath(original)) as first, rawpy.imread(os.fspath(copy)) as second:
            return bool(np.array_equal(first.raw_image_visible, second.raw_image_visible))
    from PIL import Image, ImageSequence

    from ..inputs.decode import heif_ready

    heif_ready()
    with Image.open(original) as first, Image.open(copy) as second:
        frames = zip(ImageSequence.Iterator(first), ImageSequence.Iterator(second), strict=False)
        if getattr(first, "n_frames", 1) != getattr(second, "n_frames", 1):
            return False
        return all(a.mode == b.mode and a.size == b.size and a.tobytes() == b.tobytes() for a, b in frames)


def remove_stale(path: Path) -> None:
    """The copies a run killed mid-edit left (ours, and exiftool's own); the photo itself is whole."""
    copy = temporary_path(path)
    _discard(copy)
    _discard(copy.with_name(copy.name + "_exiftool_tmp"))


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
