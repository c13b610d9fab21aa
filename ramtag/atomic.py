"""Atomic file replacement: a new version is written beside the old one and renamed over it.

Everything ramtag writes for keeps (outputs, sidecars, thresholds, cached downloads, converted
weights) goes through here, so a reader, or the next run after a crash, Ctrl-C or ``kill -9``, sees
the previous complete file or the new complete one, never half of either. The temporary file sits
in the same folder (a rename across file systems would be a copy) under a hidden name (photo software
and globs skip it). A durable replacement also syncs the file before the rename and the folder after
it, so the new version survives a power cut; caches that can be rebuilt skip that cost.

Failures are ``OSError``: each caller words them for its own kind of file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Union

Data = Union[bytes, str]


def temporary_path(dest: Path) -> Path:
    """A fresh hidden name beside ``dest``, unique to this call."""
    return dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")


def sync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; Windows cannot open folders for it)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_file(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def replace_durably(source: Path, dest: Path) -> None:
    """Move a fully written ``source`` onto ``dest`` so that a crash leaves one or the other."""
    _sync_file(source)
    os.replace(source, dest)
    sync_folder(dest.parent.resolve())


class AtomicFile:
    """The next version of ``dest``, written at ``path`` and renamed onto ``dest`` by ``commit``.

    Until then ``dest`` is untouched. ``keep_mode``: an existing ``dest`` passes its permissions on
    (a read-only or group-writable output stays so); a new file gets the umask's. As a context
    manager it commits when the block succeeds and discards on any exception. A ``commit`` that
    fails leaves ``path`` in place: a caller that journaled it (``outputs.file``) finishes later.
    """

    def __init__(self, dest: Path, *, tmp: Path | None = None, durable: bool = True, keep_mode: bool = True) -> None:
        self.dest = Path(dest)
        self.path = tmp if tmp is not None else temporary_path(self.dest)
        self.durable = durable
        self.keep_mode = keep_mode

    def commit(self) -> None:
        if self.durable:
            _sync_file(self.path)  # before the mode is copied: a read-only mode would forbid opening it
        if self.keep_mode:
            try:
                os.chmod(self.path, os.stat(self.dest).st_mode & 0o7777)
            except FileNotFoundError:  # a new file: the umask's mode, whatever the writer made (safetensors: 0600)
                os.chmod(self.path, 0o666 & ~_umask())
        os.replace(self.path, self.dest)
        if self.durable:
            sync_folder(self.dest.parent.resolve())

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is not None:
            self.discard()
            return
        try:
            self.commit()
        except BaseException:
            self.discard()
            raise


def write_atomically(
    dest: Path, data: Data, *, durable: bool = True, keep_mode: bool = True, tmp: Path | None = None
) -> None:
    """Replace ``dest`` with ``data`` (text is written as UTF-8) in one step.

    ``tmp``: a fixed temporary name (bookkeeping files whose debris should not pile up after
    crashes); by default a fresh one.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fresh = os.O_EXCL if tmp is None else os.O_TRUNC
    with AtomicFile(dest, tmp=tmp, durable=durable, keep_mode=keep_mode) as pending:
        fd = os.open(pending.path, os.O_WRONLY | os.O_CREAT | fresh, 0o666)  # the umask applies
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it: put back at once
    os.umask(mask)
    return mask
