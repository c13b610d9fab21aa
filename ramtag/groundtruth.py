"""Labelled images for ``ramtag eval``: the label files users and the paper use, matched to a model.

Three formats, told apart by their first lines (or named with ``dialect``):

- ``csv``: a header with ``path`` and ``tags`` (other columns ignored: a ``ramtag run`` CSV), tags joined by ``|``;
- ``openimages``: the official OpenImages files, ``test/<id>,tag,tag`` without header or extension;
- ``indices``: the official ImageNet-multi and HICO files, ``file.JPEG,i j k`` with 0-based line
  numbers of a taglist, and no comma at all for an image without labels.

The classes are a taglist's lines when one is given (a benchmark list may name one tag on two lines:
both lines are classes, as in the official mAP), otherwise the tags the file uses, in order of first
use. A label naming no class, a class the model does not know, an image present on one side only
and a label name that could be any of several scored images are counted for the report; only a
malformed file is an error (so is a header with other names: ``file,labels``).

The paper's benchmark files are fetched from the official repository at the pinned commit and
checked by sha256, into the same cache as the official tag lists (``RAMTAG_DATA_URL`` applies).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from .errors import GroundTruthError, UsageError  # GroundTruthError: still importable from here
from .inputs import IMAGE_EXTENSIONS
from .model.download import data_dir, fetch_pinned
from .model.registry import BENCHMARKS, Benchmark, DataFile, benchmark  # noqa: F401 - importable from here
from .text import from_spreadsheet_cell, is_json_document

DIALECTS = ("csv", "openimages", "indices")
TAG_SEPARATOR = "|"
_INDICES = re.compile(r"\d+(?:\s+\d+)*")


@dataclass(frozen=True)
class GroundTruth:
    """Images and their positive classes; ``labels[i]`` holds indices into ``classes``."""

    images: tuple[str, ...]
    classes: tuple[str, ...]
    labels: tuple[tuple[int, ...], ...]
    dialect: str
    unknown_labels: Counter[str] = field(default_factory=Counter)  # label -> occurrences
    repeated_images: int = 0  # lines naming an image already seen (their labels are merged)

    def targets(self, rows: Sequence[int], columns: Sequence[int]) -> np.ndarray:
        """Bool matrix: image ``rows[i]`` is positive for class ``columns[j]``."""
        where = {column: j for j, column in enumerate(columns)}
        out = np.zeros((len(rows), len(columns)), dtype=bool)
        for i, row in enumerate(rows):
            for j in (where[label] for label in self.labels[row] if label in where):
                out[i, j] = True
        return out


def read_taglist(path: Path) -> list[str]:
    """One class per line; trailing blank lines dropped, a blank line inside is an error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GroundTruthError(f"{path}: cannot read the taglist ({getattr(exc, 'strerror', None) or exc})") from None
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise GroundTruthError(f"{path}: the taglist is empty")
    if "" in names:
        raise GroundTruthError(f"{path}:{names.index('') + 1}: blank line in the taglist (one tag per line)")
    return names


def read_ground_truth(path: Path, *, taglist: Sequence[str] | None = None, dialect: str = "auto") -> GroundTruth:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise GroundTruthError(f"{path}: cannot read the labels ({getattr(exc, 'strerror', None) or exc})") from None
    return parse_ground_truth(text, taglist=taglist, dialect=dialect, source=str(path))


def parse_ground_truth(
    text: str, *, taglist: Sequence[str] | None = None, dialect: str = "auto", source: str = "labels"
) -> GroundTruth:
    """Parse label text in one of ``DIALECTS`` (``auto``: guessed from the content)."""
    if dialect == "auto":
        dialect = guess_dialect(text)
        if dialect != "csv":
            _check_not_a_header(text, source)
    if dialect == "csv":
        rows = _csv_rows(text, source)
    elif dialect == "openimages":
        rows = _openimages_rows(text)
    elif dialect == "indices":
        if taglist is None:
            raise UsageError(f"{source} names classes by number: give the class list they index (--gt-classes)")
        return _collect(_indices_rows(text, len(taglist), source), tuple(taglist), dialect, by_index=True)
    else:
        raise UsageError(f"unknown label format {dialect!r}; use auto or one of {', '.join(DIALECTS)}")
    classes = tuple(taglist) if taglist is not None else tuple(dict.fromkeys(t for _, ts, _ in rows for t in ts))
    if taglist is not None and dialect == "csv":  # labels people typed: `Cat` is a list's only `cat`
        known = set(classes)
        folded = Counter(name.casefold() for name in known)
        spelt = {name.casefold(): name for name in known if folded[name.casefold()] == 1}
        rows = [(image, [n if n in known else spelt.get(n.casefold(), n) for n in names], line)
                for image, names, line in rows]
    return _collect(rows, classes, dialect, by_index=False)


_IMAGE_COLUMNS = {"file", "filename", "file_name", "image", "images", "image_id", "img", "name", "path", "id", "url"}
_LABEL_COLUMNS = {"tags", "tag", "labels", "label", "classes", "class", "categories", "category", "keywords"}


def _check_not_a_header(text: str, source: str) -> None:
    """``file,labels`` first is a header with other names, not an image labelled ``labels``; ``[{``: JSON."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    if is_json_document(text):  # a descriptions or results JSON given as labels
        raise GroundTruthError(f"{source}: JSON, not labels: a labels file is a CSV with a path,tags header")
    for delimiter in (",", ";", "\t"):
        cells = [cell.strip().lower() for cell in next(csv.reader([first], delimiter=delimiter), [])]
        if len(cells) >= 2 and cells[0] in _IMAGE_COLUMNS and any(cell in _LABEL_COLUMNS for cell in cells[1:]):
            raise GroundTruthError(f"{source}: the first line {first.strip()!r} looks like a header; a labels CSV's "
                                   "header names the columns path and tags (path,tags)")


def _delimiter(first: str) -> str | None:
    """The delimiter of a path,tags header ``first``: a comma, a European spreadsheet's semicolon, a tab."""
    for delimiter in (",", ";", "\t"):
        cells = next(csv.reader([first], delimiter=delimiter), [])
        if {"path", "tags"} <= {cell.strip().lower() for cell in cells}:
            return delimiter
    return None


def guess_dialect(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "csv"
    if _delimiter(lines[0]) is not None:
        return "csv"
    labelled = [line.partition(",")[2].strip() for line in lines if "," in line]
    if all(not rest or _INDICES.fullmatch(rest) for rest in labelled):
        return "indices"
    return "openimages"


# Each parser yields (image, labels, line number); labels are names, or ints for ``indices``.


def _csv_rows(text: str, source: str) -> list[tuple[str, list[str], int]]:
    first = next((line for line in text.splitlines() if line.strip()), "")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(first) or ",")
    header = [cell.strip().lower() for cell in next(reader, [])]
    if "path" not in header or "tags" not in header:
        raise GroundTruthError(f"{source}: a labels CSV needs a header with path and tags columns")
    path_at, tags_at = header.index("path"), header.index("tags")
    rows = []
    for cells in reader:
        if not any(cell.strip() for cell in cells):
            continue
        number = reader.line_num
        if len(cells) <= path_at:
            raise GroundTruthError(f"{source}:{number}: no path on this line")
        image = from_spreadsheet_cell(cells[path_at].strip())
        if not image:
            raise GroundTruthError(f"{source}:{number}: empty path")
        if any(cell.strip() for cell in cells[len(header):]):  # a tag per cell would count only the first
            raise GroundTruthError(f"{source}:{number}: {len(cells)} cells under a header of {len(header)}: "
                                   "join a line's tags with '|' (dog|grass)")
        tags = from_spreadsheet_cell(cells[tags_at]).split(TAG_SEPARATOR) if tags_at < len(cells) else []
        rows.append((image, [tag.strip() for tag in tags if tag.strip()], number))
    return rows


def _openimages_rows(text: str) -> list[tuple[str, list[str], int]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        image, *tags = line.split(",")
        rows.append((image.strip(), [tag.strip() for tag in tags if tag.strip()], number))
    return rows


def _indices_rows(text: str, classes: int, source: str) -> list[tuple[str, list[int], int]]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        image, _, rest = line.partition(",")
        try:
            labels = [int(token) for token in rest.split()]
        except ValueError:
            raise GroundTruthError(
                f"{source}:{number}: expected class numbers after the comma, got {rest.strip()!r}"
            ) from None
        wrong = [label for label in labels if not 0 <= label < classes]
        if wrong:
            raise GroundTruthError(
                f"{source}:{number}: class number {wrong[0]} is not a line of the {classes}-line taglist"
            )
        rows.append((image.strip(), labels, number))
    return rows


def _collect(rows: list, classes: tuple[str, ...], dialect: str, *, by_index: bool) -> GroundTruth:
    lines_of: dict[str, list[int]] = {}
    for index, name in enumerate(classes):
        lines_of.setdefault(name, []).append(index)  # a name on two lines labels both
    unknown: Counter[str] = Counter()
    where: dict[str, int] = {}
    images: list[str] = []
    labels: list[set[int]] = []
    for image, names, _ in rows:
        if image not in where:
            where[image] = len(images)
            images.append(image)
            labels.append(set())
        found = labels[where[image]]
        for name in names:
            if by_index:
                found.add(name)
            elif name in lines_of:
                found.update(lines_of[name])
            else:
                unknown[name] += 1
    return GroundTruth(
        tuple(images), classes, tuple(tuple(sorted(s)) for s in labels), dialect,
        unknown, repeated_images=len(rows) - len(images),
    )


# --- the model's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class VocabularyMatch:
    """The classes the model can score: ``classes[i]`` is vocabulary tag ``vocabulary_index[i]``."""

    classes: np.ndarray  # indices into GroundTruth.classes
    vocabulary_index: np.ndarray
    unknown: tuple[str, ...]  # class names the model does not know, each once
    case_clash: tuple[str, ...] = ()  # those of them left out for matching two tags, or a tag another class has


def match_vocabulary(classes: Sequence[str], vocabulary: Sequence[str], *, ignore_case: bool = False) -> VocabularyMatch:
    """Each class by its exact name, as the official code looks tags up (``Boxer`` the dog breed is not
    ``boxer``): a near miss is unknown rather than guessed. ``ignore_case``, for typed labels (``Person``):
    a class with no exact match takes the one tag equal to it but for case, unless two tags are so, or
    another class has it already (``Sky`` beside ``sky``: one tag's two classes): ``case_clash``."""
    index_of = {name: index for index, name in reversed(list(enumerate(vocabulary)))}
    lowered: dict[str, int] = {}
    if ignore_case:
        for name, index in index_of.items():
            lowered[name.lower()] = -1 if name.lower() in lowered else index  # -1: two tags
    taken = {index_of[name] for name in classes if name in index_of}
    kept, where, unknown = [], [], {}
    for position, name in enumerate(classes):
        index = index_of.get(name)
        if index is None:
            index = lowered.get(name.lower(), -1)
            if index in taken:
                index = -1
            taken.add(index)
        if index < 0:
            unknown[name] = ignore_case and name.lower() in lowered
            continue
        kept.append(position)
        where.append(index)
    return VocabularyMatch(np.array(kept, dtype=np.int64), np.array(where, dtype=np.int64), tuple(unknown),
                           tuple(name for name, clash in unknown.items() if clash))


@dataclass(frozen=True)
class Alignment:
    """Which prediction row holds each labelled image that has one."""

    labelled_rows: np.ndarray  # indices into GroundTruth.images
    predicted_rows: np.ndarray  # the matching prediction rows
    missing: tuple[str, ...]  # labelled images with no prediction
    unlabelled: int  # predictions of images the labels do not name
    # labelled images whose name ends several prediction paths, each with two of those paths
    ambiguous: tuple[tuple[str, tuple[str, str]], ...] = ()


def _parts(key: str) -> tuple[str, ...]:
    parts = [part for part in PurePosixPath(key.replace("\\", "/")).parts if part not in (".", "/")]
    if parts and os.path.splitext(parts[-1])[1].lower() in IMAGE_EXTENSIONS:
        parts[-1] = os.path.splitext(parts[-1])[0]
    return tuple(parts)


def align(labelled: Sequence[str], predicted: Sequence[str]) -> Alignment:
    """Match label names to prediction paths: exactly, else by their last components.

    A benchmark names ``test/abc`` where ``ramtag run`` wrote ``imgs/test/abc.jpg`` or ``abc.jpg``:
    names are compared without image extensions, on as many trailing components as match
    unambiguously; a prediction is used once. A name ending several paths (``beach.jpg`` for
    ``d1/beach.jpg`` and ``d2/beach.jpg``) matches none, and is reported with two of them, so the
    labels can be given more of the path.
    """
    exact = {key: row for row, key in enumerate(predicted)}
    tails: dict[int, dict[tuple[str, ...], int]] = {}
    clashes: dict[tuple[str, ...], tuple[int, int]] = {}  # an ambiguous tail: the first two rows it ends
    split = [_parts(key) for key in predicted]

    def by_tail(parts: tuple[str, ...]) -> int | tuple[int, int] | None:
        for size in range(len(parts), 0, -1):
            if size not in tails:
                table: dict[tuple[str, ...], int] = {}
                for row, pieces in enumerate(split):
                    if len(pieces) >= size:
                        tail = pieces[-size:]
                        if table.get(tail, -1) >= 0:
                            clashes[tail] = (table[tail], row)
                        table[tail] = -1 if tail in table else row  # -1: ambiguous
                tails[size] = table
            row = tails[size].get(parts[-size:])
            if row is not None:
                return row if row >= 0 else clashes[parts[-size:]]
        return None

    used: set[int] = set()
    pairs, missing, ambiguous = [], [], []
    for position, key in enumerate(labelled):
        row = exact.get(key)
        if row is None or row in used:
            row = by_tail(_parts(key))
        if isinstance(row, tuple):
            ambiguous.append((key, (predicted[row[0]], predicted[row[1]])))
            continue
        if row is None or row in used:
            missing.append(key)
            continue
        used.add(row)
        pairs.append((position, row))
    rows = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return Alignment(rows[:, 0], rows[:, 1], tuple(missing), len(predicted) - len(used), tuple(ambiguous))


class ImageFinder:
    """The file a label name means under ``root``: as named, with ``suffix`` or an image extension
    added, or the same name directly in ``root`` (a flat copy of a benchmark's folders).

    Each folder is listed once, so finding 100,000 names costs a few listings, not a million stats.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._listings: dict[str, frozenset[str]] = {}

    def __call__(self, name: str, suffix: str = "") -> Path | None:
        name = name.replace("\\", "/").lstrip("/")
        tried = [name + suffix] if suffix else []
        tried.append(name)
        if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
            tried += [name + ext for ext in (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")]
        base = name.rpartition("/")[2]
        if base != name:
            tried += [base + suffix] if suffix else []
            tried.append(base)
        for relative in dict.fromkeys(tried):
            folder, _, file = relative.rpartition("/")
            if file in self._listing(folder) and (self.root / relative).is_file():
                return self.root / relative
        return None

    def _listing(self, folder: str) -> frozenset[str]:
        if folder not in self._listings:
            try:
                self._listings[folder] = frozenset(os.listdir(self.root / folder))
            except OSError:
                self._listings[folder] = frozenset()
        return self._listings[folder]


# --- the paper's benchmarks (listed in model/registry.py) ------------------------------------


# The largest benchmark file (the rare-200 descriptions) is 3.3 MB.
_MAX_BENCHMARK_BYTES = 64 << 20


def benchmark_file(entry: DataFile, chosen: Benchmark | None = None) -> Path:
    """A benchmark file, downloaded on first use, cached beside the tag lists, sha256-checked each use
    (``chosen``: its benchmark, whose other files not cached are named in the advice too)."""
    entries = [e for e in (chosen.taglist, chosen.annotations, chosen.descriptions) if e] if chosen else [entry]
    missing = [e.url for e in entries if e is entry or not (data_dir() / e.filename).is_file()]
    instead = (f"download {' and '.join(missing)} on a connected machine into {data_dir()} (`ramtag models "
               "download --benchmarks` fetches every benchmark's), or score your own labels with --gt FILE "
               "(and --gt-classes FILE for numbered labels)")
    return fetch_pinned(entry, what="benchmark file", instead=instead, max_bytes=_MAX_BENCHMARK_BYTES)
