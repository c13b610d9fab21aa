"""Keys that keep their meaning from one run to the next: the folders an output was made from.

A row's key is its file's path relative to the folder it was found under. One folder alone gives keys
without a prefix (``beach.jpg``); with several inputs, each folder's keys start with the folder as
written (``d1/beach.jpg``). Left at that, adding a second folder to a later run would change every
key of the first one, and the output would name the same photo twice.

So each output records its folders (``Root``: the real path and the prefix its keys got), and a later
run onto the same output keys a folder it has seen before exactly as before, wherever it is run from
and however the folder is written; a folder inside a recorded one takes the keys it has within it,
and a recorded folder found inside a walked one keeps its own. A new folder gets its name as prefix.
Two folders whose keys would collide are refused, in words, before anything is tagged.

Tar shards (``shard.tar/member``) and URLs keep the keys they always had; only folders are roots. A
file named directly or in a list is keyed by its path as given, unless it lies in one of the folders:
then it has the key that folder gives it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..text import printable, unescaped
from .folders import folder_prefix
from .refs import is_image_name
from .shards import SHARD_SUFFIXES

KEY_SCHEME = "relative to the folder input, after its recorded prefix"


@dataclass(frozen=True)
class Root:
    """A folder an output's keys come from: its real path, and what its keys start with."""

    path: str
    prefix: str

    def __post_init__(self) -> None:
        # As the keys have it (``ImageRef``): a folder name that is not UTF-8 with its bytes escaped.
        if not self.prefix.isascii():
            object.__setattr__(self, "prefix", printable(self.prefix))

    def to_data(self) -> dict[str, str]:
        return {"path": self.path, "prefix": self.prefix}


def roots_from_metadata(metadata: dict[str, Any] | None) -> list[Root]:
    """The roots an output recorded (none for outputs of earlier versions)."""
    found = (metadata or {}).get("roots") or []
    return [Root(str(item["path"]), str(item["prefix"])) for item in found
            if isinstance(item, dict) and "path" in item and "prefix" in item]


@dataclass
class KeyPlan:
    """How this run keys its folders: ``run`` (its own folders, by path as given), ``table`` (every
    root the output will record: the earlier ones, then this run's new ones)."""

    run: dict[str, Root]
    table: list[Root]

    def prefix_for(self, folder: str | os.PathLike[str], default: str) -> str:
        """The prefix of a folder input (by path as given, else by real path), or ``default``."""
        written = os.fspath(folder)
        if written in self.run:
            return self.run[written].prefix
        real = os.path.realpath(written)
        found = next((root for root in self.table if root.path == real), None)
        if found is not None:
            return found.prefix
        outer = _outer(real, self.table)  # a listed folder inside a recorded one: its keys there
        return _inside(real, outer) if outer is not None else default

    def file_key(self, path: str | os.PathLike[str]) -> str | None:
        """The key a file named directly or listed has under a folder of the table (an earlier
        run's or this one's), so that one photo is one row however it is named: ``find . | ramtag
        run --files-from -`` onto an output a folder run made gave ``./photos/a.jpg`` beside
        ``a.jpg``. None outside every folder: its key is its path as given."""
        if not self.table:
            return None
        written = os.fspath(path)
        folder = os.path.abspath(os.path.dirname(written) or ".")  # (absolute: the cache outlives a chdir)
        for place in (_real_folder(folder), folder):
            # the folder's real path; else as written (a folder reached through a link to elsewhere,
            # which the walk follows and keys under the link)
            full = os.path.join(place, os.path.basename(written))
            outer = _outer(full, self.table)
            if outer is not None:
                return printable(outer.prefix + os.path.relpath(full, outer.path).replace(os.sep, "/"))
        return None

    def nested(self) -> dict[tuple[int, int], str]:
        """Recorded roots by folder identity, so a walk that reaches one keys it as recorded."""
        found = {}
        for root in self.table:
            try:
                info = os.stat(root.path)
            except OSError:
                continue
            if info.st_ino:
                found[(info.st_dev, info.st_ino)] = root.prefix
        return found

    def reserved(self) -> dict[str, str]:
        """Prefixes taken by a root (a walk that would give another folder one of them is refused)."""
        return {root.prefix: root.path for root in self.table if root.prefix}

    def owner(self, key: str) -> Root | None:
        """The root of the whole table a key belongs to: the longest prefix it starts with."""
        number = owner_index(self.table, key)
        return self.table[number] if number is not None else None

    def file_of(self, key: str) -> str | None:
        """Where the file of ``key`` is, when the key is under one of this run's folders (rows of
        folders this run did not name, of tar shards, of URLs are never looked for)."""
        mine = [root for root in self.run.values() if key.startswith(root.prefix)]
        if not mine:
            return None
        root = max(mine, key=lambda found: len(found.prefix))
        owner = self.owner(key)
        if owner is not None and len(owner.prefix) > len(root.prefix):
            return None  # another folder's, not named in this run
        relative = key[len(root.prefix):]
        parts = relative.split("/")
        if any(p in ("", ".", "..") for p in parts) or not is_image_name(parts[-1]):
            return None
        if any(p.endswith(SHARD_SUFFIXES) for p in parts[:-1]):
            return None
        where = os.path.join(root.path, *parts)
        if "\\x" in relative and not os.path.lexists(where):  # a name that is not UTF-8, escaped
            return os.path.join(root.path, *(unescaped(part) for part in parts))
        return where


def owner_index(roots: Sequence[Root], key: str) -> int | None:
    """Which of ``roots`` (its index) a key belongs to: the one with the longest prefix it starts with."""
    found = [(len(root.prefix), number) for number, root in enumerate(roots) if key.startswith(root.prefix)]
    return max(found, key=lambda item: item[0])[1] if found else None  # the first of equal lengths


def plan_keys(folders: Sequence[str | os.PathLike[str]], *, several: bool, recorded: Sequence[Root]) -> KeyPlan:
    """The prefixes of this run's folder inputs, given the roots the output recorded.

    ``several``: this run has more than one input (or a list), so new folders are prefixed; they are
    too when the output already records a folder other than this run's.
    """
    run: dict[str, Root] = {}
    table = list(recorded)
    for folder in folders:
        written = os.fspath(folder)
        real = os.path.realpath(written)
        same = next((root for root in table if root.path == real), None)
        if same is not None:
            run[written] = same
            continue
        outer = _outer(real, table)
        if outer is not None:  # inside a recorded folder: the keys it has there
            run[written] = Root(real, _inside(real, outer))
            continue
        others = [root for root in table if root.path != real]
        prefix = folder_prefix(written) if several or others else ""
        new = Root(real, prefix)
        _check_free(new, table)
        run[written] = new
        table.append(new)
    return KeyPlan(run, table)


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    """A listed file's folder, resolved once for all the files listed in it."""
    return os.path.realpath(folder)


def _inside(real: str, outer: Root) -> str:
    return f"{outer.prefix}{os.path.relpath(real, outer.path).replace(os.sep, '/')}/"


def _outer(real: str, table: Sequence[Root]) -> Root | None:
    inside = [root for root in table if real.startswith(root.path.rstrip(os.sep) + os.sep)]
    return max(inside, key=lambda root: len(root.path)) if inside else None


def _check_free(new: Root, table: Sequence[Root]) -> None:
    """A new folder's keys must not be ones another root's images have (``d1/d2/x.jpg`` keyed
    ``d2/x.jpg`` beside a new input ``d2``)."""
    for root in table:
        if root.prefix == new.prefix or (new.prefix.startswith(root.prefix) and _holds(root, new.prefix, new)):
            inside = os.path.join(root.path, *new.prefix[len(root.prefix):].split("/"))
            raise UsageError(
                f"{new.path}: its images would be keyed {new.prefix}..., like those of {inside} in this "
                "output; write it to another --out, or rename one of the folders"
            )


def _holds(root: Root, prefix: str, new: Root | None = None) -> bool:
    """Whether a folder under ``root`` already has the keys ``prefix``... (and is not ``new`` itself)."""
    rest = prefix[len(root.prefix):]
    if rest.startswith("/") or ".." in rest.split("/"):
        return False  # "../d2/", "/abs/d2/": no walk of root gives such keys
    folder = os.path.join(root.path, *rest.split("/"))
    return os.path.isdir(folder) and (new is None or os.path.realpath(folder) != new.path)
