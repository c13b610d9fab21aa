"""What discovery left out, and why: the words of a run that found no image, and its warnings.

``Findings`` counts the files a walk skipped (not images), the hidden ones, the images the filters
dropped, the globs that matched nothing, sidecars without an image and tar shards found in folders
walked for images. ``some_images`` refuses, in those words, a run whose inputs hold no image.
"""

from __future__ import annotations

import itertools
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RamtagError
from .patterns import expand_braces
from .refs import ImageRef
from .shards import is_shard_name


@dataclass
class Findings:
    """What discovery left out: files that are not images (by extension), hidden images and
    folders (without ``--hidden``), and images the filters dropped. A run that finds nothing says
    why with it."""

    skipped: Counter[str] = field(default_factory=Counter)
    filtered: int = 0
    orphans: list[Path] = field(default_factory=list)  # XMP sidecars whose image is gone
    shards: list[str] = field(default_factory=list)  # tar shards in folders walked for images
    hidden_images: int = 0
    hidden_folders: int = 0
    unmatched: set[str] = field(default_factory=set)  # "--exclude d1" that no file has matched (yet)
    other_case: set[str] = field(default_factory=set)  # globs that match a file but for case

    def orphan(self, path: Path) -> None:
        self.orphans.append(path)

    def skip(self, path: str) -> None:
        name = os.path.basename(path)
        if is_shard_name(name):
            self.shards.append(path)
        self.skipped[os.path.splitext(name)[1].lower() or name] += 1

    def hide(self, path: str, folder: bool) -> None:
        if folder:
            self.hidden_folders += 1
        else:
            self.hidden_images += 1

    def case_hint(self, pattern: str | None = None) -> str:
        """`` (globs are case-sensitive: ...)`` where a glob that matched nothing matches in another case."""
        chosen = sorted(self.unmatched & self.other_case) if pattern is None else \
            ([pattern] if pattern in self.other_case else [])
        if not chosen:
            return ""
        return f" (globs are case-sensitive: {chosen[0]} matches files named in another case)"

    def unread_shards(self, inputs: Sequence[str]) -> list[str]:
        """The tar shards the walks left out that are not among ``inputs`` (read as shards there)."""
        named = {os.path.realpath(path) for given in inputs for path in expand_braces(given) if is_shard_name(path)}
        return [path for path in self.shards if os.path.realpath(path) not in named]

    def why(self) -> str:
        """``3 files skipped (.cr3 x2, .txt)``, or what else there is to say."""
        parts = []
        if self.skipped:
            total = sum(self.skipped.values())
            shown = [f"{kind} x{count}" if count > 1 else kind for kind, count in self.skipped.most_common(6)]
            more = ", ..." if len(self.skipped) > 6 else ""
            parts.append(f"{total} {'file' if total == 1 else 'files'} skipped ({', '.join(shown)}{more}), "
                         "not an image or camera raw extension")
        hidden = [_count(n, what) for n, what in ((self.hidden_images, "hidden image"),
                                                  (self.hidden_folders, "hidden folder")) if n]
        if hidden:
            parts.append(f"{' and '.join(hidden)} left out (--hidden includes them)")
        if self.filtered:
            parts.append(f"{self.filtered} {'image' if self.filtered == 1 else 'images'} left out by --include/--exclude"
                         + self.case_hint())
            empty = sorted(pattern for pattern in self.unmatched if pattern.startswith("--include "))
            if empty and not self.case_hint():
                parts.append(f"{', '.join(empty)} matched no file (globs match paths as the output writes them: "
                             "relative to the folder given, a.jpg or sub/a.jpg, not photos/a.jpg)")
        return "; ".join(parts) or "it holds no files"


def _count(number: int, what: str) -> str:
    return f"{number} {what}" if number == 1 else f"{number} {what}s"


class NothingFoundError(RamtagError):
    """A run's inputs hold no image at all: said at once, and no empty output is written."""


def some_images(refs: Iterable[ImageRef], findings: Findings, inputs: Sequence[str | Path]) -> Iterator[ImageRef]:
    """``refs``, after checking that there is at least one (the walk goes as far as the first)."""
    stream = iter(refs)
    first = next(stream, None)
    if first is None:
        where = ", ".join(_as_written(item) for item in inputs) or "the --files-from list"
        raise NothingFoundError(
            f"no images found under {where}: {findings.why()} (see README, "
            + ("'Usage', --include)" if findings.filtered else "'What ramtag reads')")
        )
    return itertools.chain([first], stream)


def _as_written(item: str | Path) -> str:
    text = os.fspath(item)
    return text + "/" if os.path.isdir(text) and not text.endswith("/") else text
