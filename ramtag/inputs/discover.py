"""Discovery: every input a run was given (folders, files, lists, tar shards, URLs, patterns),
turned into a stream of ``ImageRef`` in a stable order. The top layer of ``ramtag.inputs``.

Inputs are checked when discovery starts, so a typo fails before any work; the files themselves are
found lazily, one folder listing or tar member at a time.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TextIO

from ..errors import UsageError
from ..text import printable
from .findings import Findings
from .folders import folder_prefix, walk_folder
from .globs import kept
from .lists import check_list, is_stream, listed_paths
from .refs import MAX_PIXELS, ErrorCallback, ImageRef
from .remote import is_url, remote_item, resolve_input
from .roots import KeyPlan, Root, plan_keys
from .shards import (
    Item, TarShard, is_shard_name, members_or_error, name_clash, recorded, refuse_name_clashes, same_shard,
    shard_folder,
)

def discover(
    inputs: Sequence[str | Path],
    *,
    files_from: str | Path | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    hidden: bool = False,
    stdin: TextIO | None = None,
    on_error: ErrorCallback | None = None,
    max_pixels: int | None = MAX_PIXELS,
    findings: Findings | None = None,
    recorded: Sequence[Root] = (),
    on_plan: Callable[[KeyPlan], None] | None = None,
    unchanged: Callable[[TarShard], Iterable[str] | None] | None = None,
) -> Iterator[ImageRef]:
    """Every image under ``inputs`` (folders, files, tar shards, URLs, in the order given), then
    those listed.

    Inputs are checked now, so a typo fails before any work starts; the files themselves are found
    lazily. ``files_from`` names a list of paths (``lists``: one per line, or NUL-separated; ``-``:
    ``stdin``, by default ``sys.stdin``); a listed folder is walked like an input, a listed file is
    yielded even if it is missing or not an image, so it fails at decode as a row rather than
    stopping the run.
    ``include``/``exclude`` are globs (case-sensitive, ``*`` crosses ``/``) on the key or a folder
    in it (``globs``); a pattern without ``/`` also matches a file or folder name alone. Tar shards are read here, one member at a time
    (``max_pixels`` bounds the size of a member read). ``findings`` counts what was left out.

    ``recorded``: the folders an output was made from (``inputs.roots``), keyed as they were then;
    ``on_plan`` is handed this run's ``KeyPlan`` before anything is walked. ``unchanged`` (see
    ``image_refs``) spares reading tar shards an output holds every member of already.
    """
    items = discover_items(
        inputs, files_from=files_from, hidden=hidden, stdin=stdin, on_error=on_error, findings=findings,
        recorded=recorded, on_plan=on_plan,
    )
    return select(image_refs(items, hidden=hidden, max_pixels=max_pixels, unchanged=unchanged), include, exclude,
                  findings)


def discover_items(
    inputs: Sequence[str | Path],
    *,
    files_from: str | Path | None = None,
    hidden: bool = False,
    stdin: TextIO | None = None,
    on_error: ErrorCallback | None = None,
    findings: Findings | None = None,
    recorded: Sequence[Root] = (),
    on_plan: Callable[[KeyPlan], None] | None = None,
) -> Iterator[Item]:
    """Like ``discover``, but tar shards come as ``TarShard`` items, unopened: what an engine
    that hands out whole shards needs. Nothing is filtered."""
    listed = _Listings()
    given = [(os.fspath(item), _resolved(item, hidden, listed)) for item in inputs]
    refuse_name_clashes(_named_shards(given))
    if files_from is not None and not is_stream(files_from):  # a pipe is read once, as it comes
        if not os.path.isfile(files_from):
            raise UsageError(f"--files-from list not found (or not a file): {files_from}")
        check_list(files_from)
    # A brace pattern stands for several paths; a folder URL for one folder, however many files.
    places = sum(len(found) if all(isinstance(f, (str, Path)) for f in found) else 1 for _, found in given)
    several = places > 1 or files_from is not None
    folders = [f for _, found in given for f in found
               if isinstance(f, (str, Path)) and os.path.isdir(f) and listed.shards(f, hidden=False) is None]
    plan = plan_keys(folders, several=several, recorded=recorded)
    if on_plan is not None:
        on_plan(plan)
    roots = [root for written, found in given for root in (_under(written, found) if several else found)]
    walk = _Walk(hidden, on_error, findings, plan, listed)
    return _all_items(roots, files_from, stdin, walk, several)


def _under(written: str, found: list[str | Path | Item]) -> list[str | Path | Item]:
    """A folder URL's images keyed under the URL as written (a single URL is keyed by itself)."""
    base = written.rstrip("/")
    return [
        replace(item, key=f"{base}/{item.key}")
        if isinstance(item, ImageRef) and item.source is not None and item.key != written
        else item
        for item in found
    ]


def image_refs(
    items: Iterable[Item], *, hidden: bool = False, max_pixels: int | None = MAX_PIXELS,
    unchanged: Callable[[TarShard], Iterable[str] | None] | None = None,
) -> Iterator[ImageRef]:
    """``items`` with each tar shard replaced by its image members, read in order. ``unchanged``
    may answer for a shard, before it is opened, with the keys of all its members (an output holds
    them, and the shard has not changed since): those come as ``RECORDED`` refs, and it is not read."""
    for item in items:
        if isinstance(item, ImageRef):
            yield item
            continue
        keys = unchanged(item) if unchanged is not None else None
        yield from members_or_error(item, hidden=hidden, max_pixels=max_pixels) if keys is None else recorded(item, keys)


def select(
    refs: Iterable[ImageRef], include: Sequence[str], exclude: Sequence[str], findings: Findings | None = None
) -> Iterator[ImageRef]:
    """The refs whose key passes ``--include``/``--exclude`` (``findings`` counts the others)."""
    if not include and not exclude:
        return iter(refs)
    if findings is not None:
        findings.unmatched = {f"--include {p}" for p in include} | {f"--exclude {p}" for p in exclude}
    return (ref for ref in refs if kept(ref, include, exclude, findings) or _left_out(findings))


def _left_out(findings: Findings | None) -> bool:
    if findings is not None:
        findings.filtered += 1
    return False


def is_plain_input(item: str | Path) -> bool:
    """True for an existing local file or folder that holds no tar shards: what discovery did
    before shards and URLs, cheap to walk again (e.g. to count images)."""
    if not os.path.exists(item):
        return False
    if os.path.isdir(item):
        return shard_folder(Path(item)) is None
    return not is_shard_name(os.fspath(item))


def _resolved(item: str | Path, hidden: bool, listed: _Listings) -> list[str | Path | Item]:
    """An input as given on the command line, checked: a URL or brace pattern may stand for many,
    a folder of tar shards stands for its shards (listed now, so that their names are checked now)."""
    if os.path.isdir(item):
        shards = listed.shards(item, hidden=hidden)
        return [item] if shards is None else list(shards)
    if os.path.exists(item):
        return [item]
    return resolve_input(os.fspath(item))


def _named_shards(given: Sequence[tuple[str, list[str | Path | Item]]]) -> Iterator[TarShard]:
    """The tar shards the inputs name: files, shard folders, patterns and URLs (not those in listed
    or walked folders, found only as the run goes)."""
    for _, found in given:
        for item in found:
            if isinstance(item, TarShard):
                yield item
            elif isinstance(item, (str, Path)) and is_shard_name(os.fspath(item)) and not os.path.isdir(item):
                yield TarShard(os.fspath(item), os.path.basename(item))


class _Listings:
    """``shard_folder`` for one discovery: a folder input is asked about when it is resolved, keyed
    and expanded, and listed once for all three. The expansion is the last question (``last``), so
    the folders of a long ``--files-from`` list are not remembered."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, bool], list[TarShard] | None] = {}

    def shards(self, folder: str | Path, *, hidden: bool, last: bool = False) -> list[TarShard] | None:
        key = (os.fspath(folder), hidden)
        if key in self._found:
            return self._found.pop(key) if last else self._found[key]
        found = shard_folder(Path(folder), hidden=hidden)
        if not last:
            self._found[key] = found
        return found


@dataclass
class _Walk:
    """How folders are walked in one run: hidden files or not, who hears of skips, the key plan."""

    hidden: bool
    on_error: ErrorCallback | None
    findings: Findings | None
    plan: KeyPlan
    listed: _Listings
    nested: dict[tuple[int, int], str] = field(init=False)
    reserved: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.nested, self.reserved = self.plan.nested(), self.plan.reserved()

    def folder(self, folder: str | Path, several: bool) -> Iterator[ImageRef]:
        default = folder_prefix(os.fspath(folder)) if several else ""
        found = self.findings
        return walk_folder(
            Path(folder), hidden=self.hidden, on_error=self.on_error, on_skipped=found and found.skip,
            key_prefix=self.plan.prefix_for(folder, default), nested=self.nested, reserved=self.reserved,
            on_orphan=found and found.orphan, on_hidden=found and found.hide,
        )


def _all_items(
    roots: Sequence[str | Path | Item],
    files_from: str | Path | None,
    stdin: TextIO | None,
    walk: _Walk,
    several: bool,
) -> Iterator[Item]:
    found = (item for root in roots for item in _expand(root, walk, several))
    if files_from is not None:
        listed = (item for line in listed_paths(files_from, stdin) for item in _expand(line, walk, True))
        found = itertools.chain(found, listed)
    yield from _once(found, walk.on_error, every=several)


_SAID_TWICE = 3


def _once(items: Iterable[Item], on_error: ErrorCallback | None, *, every: bool = True) -> Iterator[Item]:
    """Each key once: an image given twice (``photos`` and ``photos/a.jpg``, a list naming a file
    twice) is tagged once; another file whose key is taken already is left out, and said so; two tar
    shards of one name, whose keys would collide, are refused. Without ``every`` (one input, whose
    names cannot repeat) only keys with an escaped byte are looked at: ``caf\\xe9.jpg`` is also
    what a name that is not UTF-8 becomes (``text.printable``)."""
    keys: dict[str, str] = {}
    named: set[str] = set()  # absolute paths of the files named directly or listed (``a.jpg``, ``./x/../a.jpg``)
    shards: dict[str, TarShard] = {}
    twice = 0  # images given twice: the first few are said, not thousands (``photos photos/2024``)

    def given_twice(path: Path) -> None:
        nonlocal twice
        twice += 1
        if on_error is not None and twice <= _SAID_TWICE:
            on_error(path, "given twice among the inputs: tagged once" + (
                " (any more files given twice are not listed)" if twice == _SAID_TWICE else ""))

    for item in items:
        if not every and (isinstance(item, TarShard) or "\\x" not in item.key):
            yield item
            continue
        if isinstance(item, TarShard):
            if item.name in shards:
                first = shards[item.name]
                if not same_shard(first, item):  # one from a list or a URL folder (the others are checked first)
                    raise name_clash(first.location, item)
                given_twice(Path(item.location))
                continue
            shards[item.name] = item
        elif item.source is None and not item.walked and _named_before(item.path, named):
            given_twice(item.path)
            continue
        elif item.key in keys:
            first = keys[item.key]
            if first == os.fspath(item.path) or os.path.realpath(first) == os.path.realpath(item.path):
                given_twice(item.path)
            elif on_error is not None:  # another file left out: each one said
                whose = "this file's" if printable(name := os.fspath(item.path)) != name else "the other's (this has a \\)"
                escaped = f" (a name that is not UTF-8 is written with its bytes as \\xNN: {whose})" if "\\x" in item.key else ""
                on_error(item.path, f"its key {item.key} is {first}'s already{escaped}: not tagged (rename it, or tag it into another --out)")
            continue
        else:
            keys[item.key] = os.fspath(item.path)
        yield item


def _named_before(path: Path, named: set[str]) -> bool:
    """Whether this file, named directly or listed, was so named already, however written (keys
    keep the path as written, so ``a.jpg`` and ``/home/me/a.jpg`` would be two rows of one file)."""
    real = os.path.normpath(os.path.abspath(path))  # words only: no file system call per listed file
    if real in named:
        return True
    named.add(real)
    return False


def _expand(item: str | Path | Item, walk: _Walk, several: bool) -> Iterator[Item]:
    """A folder walked (or its tar shards), anything else yielded as the user wrote it; with
    ``several`` inputs, a folder's keys start with the folder as written."""
    if not isinstance(item, (str, Path)):
        yield item  # already resolved: a shard or a remote image
        return
    if isinstance(item, str) and is_url(item):  # a URL in a list: no lookup, it fails as a row
        yield remote_item(item, item)
    elif os.path.isdir(item):
        shards = walk.listed.shards(item, hidden=walk.hidden, last=True)
        if shards is not None:
            yield from shards
        else:
            yield from walk.folder(item, several)
    elif is_shard_name(os.fspath(item)):
        yield TarShard(os.fspath(item), os.path.basename(item))
    else:
        yield ImageRef(Path(item), walk.plan.file_key(item) or str(item))
