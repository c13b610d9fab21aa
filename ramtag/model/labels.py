"""The tag vocabulary: names (English, optionally Chinese) and one threshold per tag."""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import RamtagWarning, UsageError, VocabularyError
from .config import LANGS, VOCAB_MODES  # noqa: F401 - importable from here

# The official code starts every class at 0.68 and then overwrites it from the thresholds file.
DEFAULT_THRESHOLD = 0.68
# What joins a row's tags in CSV (outputs.formats has the same) and Lightroom's keyword hierarchy.
LIST_SEPARATOR = "|"


def read_lines(path: Path, what: str) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VocabularyError(f"{path}: {what} not found; check the path") from None
    except UnicodeDecodeError:
        raise VocabularyError(f"{path}: {what} is not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise VocabularyError(f"{path}: cannot read {what} ({exc.strerror})") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def read_thresholds(path: Path) -> list[float]:
    """The official format: one threshold per line, in the tag list's order."""
    values = []
    for number, line in enumerate(read_lines(path, "thresholds file"), start=1):
        if _named(line):
            raise VocabularyError(f"{path}:{number}: a threshold with its tag's name, which only ramtag reads "
                                  "(run --thresholds, eval --thresholds); the official format has the number alone")
        values.append(_threshold(path, number, line.strip()))
    return values


# ``ramtag eval --calibrate`` names the tags (``0.62<TAB>sky``) when the scores were of some tags
# (``--only-tags``, open-set ones): those are applied by name, whatever the order a run names them in.
NAMED_SEPARATOR = "\t"


def read_named_thresholds(path: Path) -> dict[str, float] | None:
    """A thresholds file naming its tags as ``{tag: threshold}``; ``None`` for the official format."""
    lines = read_lines(path, "thresholds file")
    if not lines or not _named(lines[0]):
        return None
    named: dict[str, float] = {}
    for number, line in enumerate(lines, start=1):
        value, _, name = line.partition(NAMED_SEPARATOR)
        if not name.strip():
            raise VocabularyError(f"{path}:{number}: no tag name after the threshold; a file that names its tags "
                                  "has 'threshold<TAB>tag' on every line")
        named[name.strip()] = _threshold(path, number, value.strip())
    return named


def _named(line: str) -> bool:
    """Whether a line names its tag: text after the tab (a tab alone, as spreadsheets leave them at
    the end of a line, is whitespace)."""
    return bool(line.partition(NAMED_SEPARATOR)[2].strip())


def _threshold(path: Path, number: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise VocabularyError(f"{path}:{number}: {text!r} is not a number; one threshold per line") from None
    if not 0.0 <= value <= 1.0:
        raise VocabularyError(f"{path}:{number}: threshold {value} is outside [0, 1]")
    return value


@dataclass(frozen=True)
class TagVocabulary:
    tags: tuple[str, ...]
    thresholds: np.ndarray
    tags_zh: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.thresholds) != len(self.tags):
            raise VocabularyError(
                f"{len(self.thresholds)} thresholds for {len(self.tags)} tags"
            )
        if self.tags_zh is not None and len(self.tags_zh) != len(self.tags):
            raise VocabularyError(
                f"the Chinese tag list has {len(self.tags_zh)} entries for {len(self.tags)} tags"
            )
        for name in (*self.tags, *(self.tags_zh or ())):
            if LIST_SEPARATOR in name:
                raise VocabularyError(_separator_in(name))
        seen: set[str] = set()
        for name in self.tags:
            if name in seen:
                raise VocabularyError(f"tag {name!r} is in the vocabulary twice; give each tag once")
            seen.add(name)

    def __len__(self) -> int:
        return len(self.tags)

    @classmethod
    def from_names(
        cls,
        tags: Sequence[str],
        thresholds: Sequence[float] | None = None,
        tags_zh: Sequence[str] | None = None,
    ) -> TagVocabulary:
        values = np.full(len(tags), DEFAULT_THRESHOLD, dtype=np.float32)
        if thresholds is not None:
            given = np.asarray(thresholds, dtype=np.float32)[: len(tags)]
            values[: len(given)] = given
        return cls(tuple(tags), values, tuple(tags_zh) if tags_zh is not None else None)

    @classmethod
    def from_files(
        cls,
        tag_list: Path,
        tag_list_zh: Path | None = None,
        thresholds: Path | None = None,
        notes: list[Warning] | None = None,
        spare: int = 0,
    ) -> TagVocabulary:
        """Read the official file formats: one entry per line, in class order.

        As in the official code, a thresholds file shorter than the tag list leaves the rest at 0.68,
        with a warning (a shorter file is usually the wrong one); a longer one is an error (it
        belongs to another vocabulary) unless by at most ``spare`` values, which are left out.
        """
        tags = read_lines(tag_list, "tag list")
        if not tags:
            raise VocabularyError(f"{tag_list}: tag list is empty")
        zh = None
        if tag_list_zh is not None:
            zh = [name.strip() for name in read_lines(tag_list_zh, "Chinese tag list")]
            for number, name in enumerate(zh, start=1):
                if LIST_SEPARATOR in name:
                    raise VocabularyError(f"{tag_list_zh}:{number}: {_separator_in(name)}")
            if len(zh) != len(tags):
                raise VocabularyError(
                    f"{tag_list_zh}: {len(zh)} Chinese tags but {tag_list} has {len(tags)}; "
                    "use the two lists of the same release"
                )
        values = None
        if thresholds is not None:
            values = read_thresholds(thresholds)
            if len(values) > len(tags) + spare:
                raise VocabularyError(
                    f"{thresholds}: {len(values)} thresholds but {tag_list} has {len(tags)} tags; "
                    "use the thresholds of the same release"
                )
            values = values[: len(tags)]
            if len(values) < len(tags):
                note = RamtagWarning(f"{thresholds}: {len(values)} thresholds for the {len(tags)} tags of {tag_list}; "
                                     f"the other {len(tags) - len(values)} keep {DEFAULT_THRESHOLD:g}, as in the "
                                     "official code")
                if notes is not None:  # for the caller to say (``notes``: see ``load_vocabulary``)
                    notes.append(note)
                else:
                    warnings.warn(note, stacklevel=2)
        try:
            return cls.from_names(tags, values, zh)
        except VocabularyError as error:  # a name the outputs could not hold or tell apart
            raise VocabularyError(f"{tag_list}: {error}") from None

    def with_threshold(self, threshold: float) -> TagVocabulary:
        """One threshold for every tag (``--threshold``)."""
        if not 0.0 <= threshold <= 1.0:
            raise VocabularyError(f"threshold {threshold} is outside [0, 1]")
        return replace(self, thresholds=np.full(len(self.tags), threshold, dtype=np.float32))

    def extend(self, other: TagVocabulary) -> TagVocabulary:
        """This vocabulary followed by ``other`` (open-set tags after the built-in ones)."""
        zh = None
        if self.tags_zh is not None or other.tags_zh is not None:
            zh = (self.tags_zh or self.tags) + (other.tags_zh or other.tags)
        return TagVocabulary(
            self.tags + other.tags, np.concatenate([self.thresholds, other.thresholds]), zh
        )

    def with_thresholds_at(self, positions: Sequence[int], values: Sequence[float]) -> TagVocabulary:
        """These tags' thresholds replaced (``--only-tags`` with thresholds for them alone)."""
        thresholds = self.thresholds.copy()
        thresholds[list(positions)] = np.asarray(values, dtype=np.float32)
        return replace(self, thresholds=thresholds)

    def subset(self, positions: Sequence[int]) -> TagVocabulary:
        """The tags at ``positions``, in that order, with their thresholds and Chinese names."""
        zh = tuple(self.tags_zh[i] for i in positions) if self.tags_zh is not None else None
        return TagVocabulary(tuple(self.tags[i] for i in positions), self.thresholds[list(positions)], zh)

    def positions(self, names: Sequence[str], option: str = "--only-tags", *, open_set: bool = True) -> list[int]:
        """Where the named tags are, in the order named, each once.

        A name is a tag's English name, else the same in another case, else a Chinese name (which
        can belong to several tags: all of them). Names not found are one ``UsageError``.
        """
        exact = {tag: index for index, tag in enumerate(self.tags)}
        folded: dict[str, list[int]] = {}
        for index, tag in enumerate(self.tags):
            folded.setdefault(tag.casefold(), []).append(index)
        chinese: dict[str, list[int]] = {}
        for index, name in enumerate(self.tags_zh or ()):
            chinese.setdefault(name, []).append(index)
        found: dict[int, None] = {}
        missing = []
        for name in names:
            hits = [exact[name]] if name in exact else folded.get(name.casefold()) or chinese.get(name)
            if hits:
                found.update(dict.fromkeys(hits))
            else:
                missing.append(name)
        if missing:
            chinese = self.tags_zh is None and any(not name.isascii() for name in missing)
            raise UsageError(
                f"{option}: not in the model's vocabulary: {_unknown(missing, self.tags)}; "
                + ("Chinese names need the Chinese tag list: pass --tag-list-zh" if chinese else
                   "check the spelling against the tag list" + (", or use --tags for tags outside it" if open_set else ""))
            )
        return list(found)

    def selected(self, scores: np.ndarray) -> np.ndarray:
        """Boolean mask of tags over threshold (strictly, as the official code)."""
        return scores > self.thresholds


def _unknown(names: Sequence[str], tags: Sequence[str]) -> str:
    """The first few names not found, each with the closest tags there are."""
    shown = []
    for name in names[:5]:
        close = difflib.get_close_matches(name, tags, n=2, cutoff=0.6)
        shown.append(f"{name!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""))
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return ", ".join(shown) + more


def _separator_in(name: str) -> str:
    return (f"tag {name!r} contains {LIST_SEPARATOR!r}, which separates tags in CSV outputs and in "
            "Lightroom's keyword hierarchy; rename it")


def names_given(names: Sequence[str] | str) -> list[str]:
    """Tag names given as a list, or as one string separated by commas; at least one."""
    listed = [part.strip() for part in names.split(",")] if isinstance(names, str) else [str(name).strip() for name in names]
    listed = [name for name in listed if name]
    if not listed:
        raise UsageError("no tags named: give at least one tag to score")
    return listed
