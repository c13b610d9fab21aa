"""Walking local folders for images: streaming, sorted the same on every machine, loops skipped.

A walk holds one directory listing (plus the names of folders still to visit), so a million files
cost no more memory than a thousand.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import UsageError
from .refs import ErrorCallback, ImageRef, is_image_name

# Hidden folders that tools keep (version control, caches, editors, the trash, macOS's indexes):
# left out without a word, since --hidden would only walk them for nothing or for deleted files.
TOOL_FOLDERS = frozenset({
    ".git", ".hg", ".svn", ".bzr", ".venv", ".tox", ".cache", ".idea", ".vscode", ".Trash", ".Trashes",
    ".Spotlight-V100", ".fseventsd", ".TemporaryItems", ".DocumentRevisions-V100",
})
# Folders that NAS systems and Windows keep beside a person's photos, not hidden by a dot: Synology's
# thumbnails (five small JPEGs per photo in @eaDir), recycle bins and snapshots (copies of
# everything), QNAP's, Windows' bin and index. Left out like hidden folders, without a word.
SYSTEM_FOLDERS = frozenset({  # compared without case: Windows writes $Recycle.Bin and $RECYCLE.BIN
    "@eadir", "#recycle", "#snapshot", "@recycle", "@recently-snapshot", "$recycle.bin",
    "system volume information",
})


# The copy `run --embed` edits beside a photo (`.IMG_1.ramtag-tmp.JPG`), left behind by a kill:
# never a photo, --hidden or not; the next --embed run or `xmp clean` removes it.
_EDIT_COPY = re.compile(r"\..+\.ramtag-tmp\.[^.]+")


def folder_prefix(written: str) -> str:
    """``photos/2024/`` for a folder written ``photos/2024`` or ``./photos/2024/``; "" for ``.``."""
    path = Path(written).as_posix()
    if path == ".":
        return ""
    return path if path.endswith("/") else path + "/"  # the root folder is "/" already


def walk_folder(
    root: Path,
    *,
    hidden: bool = False,
    on_error: ErrorCallback | None = None,
    key_prefix: str = "",
    on_skipped: Callable[[str], None] | None = None,
    nested: dict[tuple[int, int], str] | None = None,
    reserved: dict[str, str] | None = None,
    on_orphan: Callable[[Path], None] | None = None,
    on_hidden: Callable[[str, bool], None] | None = None,
) -> Iterator[ImageRef]:
    """Images under ``root``, following symlinks, each real folder visited once (no loops).

    Keys are relative to ``root``, after ``key_prefix``. Each folder's files come first, sorted by
    name (code points, so every machine agrees), then its subfolders in the same order. Only a
    folder's sorted listing and the names of the folders still to visit are held in memory.
    ``on_skipped`` is told the path of each file left out for not being an image.

    ``nested`` maps folders (by identity) to the key prefix an output recorded for them: a walk that
    reaches one keys it as recorded (``inputs.roots``). ``reserved`` maps the prefixes other folders
    have to their paths: a folder that would get one of them is refused, its keys would collide.
    ``on_orphan`` is told of each XMP sidecar with no image beside it (``IMG_1.xmp`` or
    ``IMG_1.CR2.xmp`` and no ``IMG_1.*`` image in its folder).
    ``on_hidden`` is told of each hidden image and folder left out (path, is a folder), so that a
    folder whose images are all hidden can say why none was found.
    """
    visited: set[tuple[int, int] | str] = set()
    inside = _Inside(os.fspath(root), hidden)
    pending: list[tuple[str, str]] = [(os.fspath(root), key_prefix)]  # (folder path, key prefix), a stack
    while pending:
        folder, prefix = pending.pop()
        identity = _folder_identity(folder, on_error)
        if identity is None or identity in visited:
            continue  # unreadable (reported), or a link back to a folder already walked
        visited.add(identity)
        if nested and identity in nested:
            prefix = nested[identity]
        elif reserved and prefix in reserved and os.path.realpath(folder) != reserved[prefix]:
            raise UsageError(
                f"{folder}: its images would be keyed {prefix}..., like those of {reserved[prefix]} in this "
                "output; write to another --out, or rename one of the folders"
            )
        entries = _sorted_listing(folder, on_error)
        if on_orphan is not None:
            for path in _orphan_sidecars(entries):
                on_orphan(path)
        subfolders: list[str] = []
        for entry in entries:
            if entry.name.startswith(".") and _EDIT_COPY.fullmatch(entry.name):
                continue
            if not hidden and (entry.name.startswith(".") or _system_folder(entry)):
                if on_hidden is not None and entry.name not in TOOL_FOLDERS and entry.name.casefold() not in SYSTEM_FOLDERS and (
                    (is_folder := _is_dir(entry)) or is_image_name(entry.name)
                ):
                    on_hidden(entry.path, is_folder)
                continue
            if entry.is_symlink() and _is_dir(entry) and inside.reached(entry.path):
                continue  # its target is walked under its own path: keys do not hang on a shortcut's name
            if _is_dir(entry):
                subfolders.append(entry.name)
            elif is_image_name(entry.name):
                if _is_file(entry):
                    yield ImageRef(Path(entry.path), prefix + entry.name, walked=True)
                elif entry.is_symlink() and on_error is not None:
                    on_error(Path(entry.path), _broken_link(entry.path))
            elif on_skipped is not None and _is_file(entry):
                on_skipped(entry.path)
        del entries
        for name in reversed(subfolders):
            pending.append((os.path.join(folder, name), f"{prefix}{name}/"))


class _Inside:
    """Whether a link to a folder leads where the walk goes anyway, under its own path: inside the
    root, in no hidden folder left out. Such a link is not followed: each folder is walked once, and
    the first path to reach it gave its photos their keys, so a link sorted before the real folder
    took them over (and deleting it had those photos tagged again under new keys). Links to files
    are followed, each a name of its own (an album of links); so are links to folders elsewhere."""

    def __init__(self, root: str, hidden: bool) -> None:
        self.root = os.path.join(os.path.realpath(root), "")  # with its separator ("/" stays "/")
        self.hidden = hidden

    def reached(self, link: str) -> bool:
        target = os.path.realpath(link)
        if not target.startswith(self.root) or not os.path.exists(target):
            return False
        parts = os.path.relpath(target, self.root).split(os.sep)
        return self.hidden or not any(part.startswith(".") or part.casefold() in SYSTEM_FOLDERS for part in parts)


def _broken_link(path: str) -> str:
    """Why a symbolic link leads to no file: a loop (links that lead back to each other) or not."""
    try:
        os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "symbolic link loop skipped (links that lead back to each other)"
    return "broken symbolic link skipped"


def _system_folder(entry: os.DirEntry[str]) -> bool:
    return entry.name[:1] in "@#$Ss" and entry.name.casefold() in SYSTEM_FOLDERS and _is_dir(entry)


def _orphan_sidecars(entries: list[os.DirEntry[str]]) -> list[Path]:
    names = [entry.name for entry in entries]
    images = {name for name in names if is_image_name(name)}
    stems = {os.path.splitext(name)[0] for name in images}
    return [
        Path(entry.path) for entry in entries
        if entry.name.lower().endswith(".xmp") and entry.name[:-4] not in images and entry.name[:-4] not in stems
    ]


def _folder_identity(folder: str, on_error: ErrorCallback | None) -> tuple[int, int] | str | None:
    try:
        info = os.stat(folder)
    except OSError as error:
        _report(on_error, folder, error)
        return None
    if info.st_ino == 0:  # some network and FUSE file systems have no inode numbers
        return os.path.realpath(folder)
    return (info.st_dev, info.st_ino)


def _sorted_listing(folder: str, on_error: ErrorCallback | None) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as listing:
            return sorted(listing, key=lambda entry: entry.name)
    except OSError as error:
        _report(on_error, folder, error)
        return []


def _report(on_error: ErrorCallback | None, folder: str, error: OSError) -> None:
    if on_error is None:
        return
    if isinstance(error, PermissionError):
        on_error(Path(folder), "permission denied: folder skipped")
    else:
        on_error(Path(folder), f"cannot list folder ({error.strerror or error}): folder skipped")


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _is_file(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False

