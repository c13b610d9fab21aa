"""``--include``/``--exclude``: globs on the keys of a run's images and the folders they are in."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from .shards import InMemory, Unusable

if TYPE_CHECKING:
    from .findings import Findings
    from .refs import ImageRef


def selected(key: str, include: Sequence[str], exclude: Sequence[str], findings: Findings | None = None,
             *, member: str | None = None) -> bool:
    """``member``: a tar member's path in its shard (``00000.tar/000000001.jpg`` for the key
    ``00000.tar/000000001``), matched as well, so that ``*.jpg`` takes it."""
    included = not include or matches(key, include, "--include", findings) or (
        member is not None and matches(member, include, "--include", findings))
    excluded = bool(exclude) and (included or bool(findings and findings.unmatched)) and (
        matches(key, exclude, "--exclude", findings) or (member is not None and matches(member, exclude, "--exclude",
                                                                                           findings)))
    return included and not excluded  # (an exclude is tried on the others too while it has matched nothing)


def kept(ref: ImageRef, include: Sequence[str], exclude: Sequence[str], findings: Findings | None = None) -> bool:
    """Whether ``--include``/``--exclude`` keep ``ref``: by its key, or a tar member's name, or a
    file named or listed by its path as given (keyed under a folder of the output, its key is
    shorter); a whole shard's row (``shard_row``) always."""
    given = ref.path.as_posix() if ref.source is None and not ref.walked and ref.path is not None else None
    other = member_path(ref) or (given if given != ref.key else None)
    return shard_row(ref) or selected(ref.key, include, exclude, findings, member=other)


def shard_row(ref: ImageRef) -> bool:
    """A row for a whole tar shard (it cannot be read, or is damaged): never filtered out."""
    return isinstance(ref.source, Unusable) and "/" not in ref.key and ref.key == ref.source.name


def member_path(ref: ImageRef) -> str | None:
    """A tar member's path in its shard (``00000.tar/000000001.jpg``), when its key lacks it."""
    if not isinstance(ref.source, (InMemory, Unusable)) or "/" not in ref.key or ref.key.endswith("/" + ref.source.name):
        return None
    return f"{ref.key.partition('/')[0]}/{ref.source.name}"


def matches(key: str, patterns: Sequence[str], option: str = "", findings: Findings | None = None) -> bool:
    """Whether a glob matches the key, or one of the folders it is in (``2024/raw`` takes what is
    under it, ``d1/`` only a folder); one without ``/`` also matches a file or folder name alone."""
    parts = key.split("/")
    folders = ["/".join(parts[:end]) for end in range(1, len(parts))]
    matched = False
    for pattern in patterns:
        pending = findings is not None and f"{option} {pattern}" in findings.unmatched
        if matched and not pending:
            continue  # the answer is known: only a glob that has matched nothing yet is still tried
        bare = pattern.rstrip("/")
        names = parts[:-1] if pattern.endswith("/") else parts  # "d1/": folders only
        paths = folders if pattern.endswith("/") else [key, *folders]
        if _any_match(bare, paths, names):
            matched = True
            if pending:
                findings.unmatched.discard(f"{option} {pattern}")  # type: ignore[union-attr]
        elif pending and _any_match(bare.casefold(), [p.casefold() for p in paths], [n.casefold() for n in names]):
            findings.other_case.add(f"{option} {pattern}")  # type: ignore[union-attr]  # *.cr2 for IMG_1.CR2
    return matched


def _any_match(pattern: str, paths: Sequence[str], names: Sequence[str]) -> bool:
    return any(fnmatchcase(path, pattern) for path in paths) or (
        "/" not in pattern and any(fnmatchcase(name, pattern) for name in names))
