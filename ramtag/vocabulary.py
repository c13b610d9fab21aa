"""Which tags a run knows: the vocabulary files given, or the official ones, with their thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .model.labels import TagVocabulary, names_given, read_named_thresholds, read_thresholds


@dataclass
class Prepared:
    """A run's vocabulary as its files give it, before the weights load. ``named``: thresholds
    by tag name (a file ``eval --calibrate`` wrote), applied once the tagger exists;
    ``open_values``: a thresholds file's values for open-set tags; ``notes``: warnings to give
    once the weights have loaded."""

    vocabulary: TagVocabulary
    named: dict[str, float] | None
    open_values: list[float] | None
    notes: list[Warning]


def prepare_vocabulary(
    *,
    tag_list: str | Path | None = None,
    tag_list_zh: str | Path | None = None,
    thresholds: str | Path | None = None,
    threshold: float | None = None,
    only_tags: Sequence[str] | str | None = None,
    open_tags: int = 0,
    vocab: str = "open",
) -> Prepared:
    """The vocabulary files read and checked against each other, with the names ``only_tags`` gives
    and the length of a thresholds file: every mistake in them found without torch or the weights."""
    notes: list[Warning] = []
    named = read_named_thresholds(Path(thresholds)) if thresholds is not None else None
    vocabulary = load_vocabulary(
        tag_list=Path(tag_list) if tag_list is not None else None,
        tag_list_zh=Path(tag_list_zh) if tag_list_zh is not None else None,
        thresholds=Path(thresholds) if thresholds is not None and named is None else None,
        threshold=threshold, notes=notes if named is None else [], spare=open_tags,
    )
    picked = vocabulary.positions(names_given(only_tags)) if only_tags is not None else None
    open_values = None
    if thresholds is not None and threshold is None and named is None:
        builtin_values, open_values = split_thresholds(
            Path(thresholds), read_thresholds(Path(thresholds)), tags=len(vocabulary),
            scored=len(picked) if picked is not None else len(vocabulary), open_tags=open_tags, vocab=vocab,
        )
        if builtin_values is not None:
            vocabulary = vocabulary.with_thresholds_at(picked if picked is not None else range(len(vocabulary)), builtin_values)
        if builtin_values is not None or open_values is not None:  # the file was not a short one for the tag list
            notes = [note for note in notes if not str(note).startswith(f"{Path(thresholds)}: ")]
    return Prepared(vocabulary, named, open_values, notes)


def load_vocabulary(
    *,
    tag_list: Path | None = None,
    tag_list_zh: Path | None = None,
    thresholds: Path | None = None,
    threshold: float | None = None,
    notes: list[Warning] | None = None,
    spare: int = 0,
) -> TagVocabulary:
    """The given files, or the official lists (downloaded and checked at first use).

    The official Chinese list and thresholds go with the official tag list, also when that list is
    passed as a file (its sha256 tells): then they are added where available. Any other
    ``tag_list`` gets no Chinese names unless given, and 0.68 wherever no threshold is given, with a
    ``DefaultThresholdWarning`` (a ``RamtagWarning``) saying so (a lower quality nobody asked for must not pass silently);
    with ``notes``, such warnings are added there instead, for the caller to give when it chooses.
    ``spare``: how many values a thresholds file may have beyond the tags (open-set tags' values, which
    ``split_thresholds`` takes), ignored here.
    """
    if tag_list is None:
        from .model.download import data_file

        tag_list = data_file("tag_list")
        tag_list_zh = tag_list_zh or data_file("tag_list_zh")
        thresholds = thresholds or data_file("thresholds")
    elif thresholds is None and threshold is None:
        tag_list_zh, thresholds = _official_companions(tag_list, tag_list_zh, notes)
    vocabulary = TagVocabulary.from_files(tag_list, tag_list_zh, thresholds, notes, spare=spare)
    return vocabulary.with_threshold(threshold) if threshold is not None else vocabulary


def _official_companions(
    tag_list: Path, tag_list_zh: Path | None, notes: list[Warning] | None = None
) -> tuple[Path | None, Path | None]:
    """The official Chinese list and thresholds for ``tag_list`` when it is the official list; a
    warning when the tags get the default threshold."""
    import warnings

    from .errors import ChecksumError, DefaultThresholdWarning, ResourceUnavailableError
    from .hashing import sha256_file
    from .model.download import data_file
    from .model.labels import DEFAULT_THRESHOLD
    from .model.registry import DATA_FILES

    try:
        is_official = sha256_file(tag_list) == DATA_FILES["tag_list"].sha256
    except OSError:
        return tag_list_zh, None  # the vocabulary's own reading says what is wrong with the file
    thresholds = None
    why = f"{tag_list} is not the official tag list"
    if is_official:
        try:
            thresholds = data_file("thresholds")
            if tag_list_zh is None:
                tag_list_zh = data_file("tag_list_zh")
        except (ResourceUnavailableError, ChecksumError) as error:
            why = f"{tag_list} is the official tag list, but its per-tag thresholds are not available ({error})"
    if thresholds is None:
        note = DefaultThresholdWarning(f"{why}: every tag uses the threshold {DEFAULT_THRESHOLD:g}; pass --thresholds "
                                       "FILE (the official ram_tag_list_threshold.txt for the official list) or "
                                       "--threshold T")
        if notes is not None:
            notes.append(note)
        else:
            warnings.warn(note, stacklevel=3)
    return tag_list_zh, thresholds


def split_thresholds(
    path: Path, values: list[float], *, tags: int, scored: int, open_tags: int = 0, vocab: str = "open"
) -> tuple[list[float] | None, list[float] | None]:
    """Where a thresholds file's values go in a run: (the scored built-in tags', the open-set tags').

    ``tags``: the tag list's length; ``scored``: the built-in tags the run scores (all of them, or
    those ``--only-tags`` picks); ``open_tags``: the ``--tags`` ones, alone (``vocab`` open) or after
    the built-in ones (both). A file for the whole tag list gives ``(None, None)``: it is read as
    such (a shorter one as the official code reads it). A file with one value per tag the run
    scores, in its order, as ``ramtag eval --calibrate`` writes them from its output, is split.
    """
    from .errors import UsageError

    if open_tags and vocab == "open":
        if len(values) == open_tags:
            return None, values
        if len(values) != tags:
            raise UsageError(
                f"{path}: {len(values)} thresholds, but --tags names {open_tags} tags; with --vocab open "
                "give one per --tags tag, in their order"
            )
        return None, None  # the built-in tags' file, which --vocab open leaves unused
    if open_tags and len(values) == scored + open_tags and len(values) != tags:  # (the tag list's own first)
        return values[:scored], values[scored:]
    if len(values) > tags:  # only possible with open-set tags: a longer file is refused before
        raise UsageError(
            f"{path}: {len(values)} thresholds for {scored} built-in tags and {open_tags} from --tags; "
            f"give {scored}, or {scored + open_tags} (the --tags ones after the built-in ones)"
        )
    if scored < tags and len(values) == scored:
        return values, None  # for the --only-tags ones alone
    return None, None


def named_thresholds(vocabulary: TagVocabulary, named: dict[str, float], path: Path) -> tuple[list[float], list[Warning]]:
    """The thresholds of ``vocabulary`` with those a file names (``read_named_thresholds``) put in,
    by tag name; warnings for the run's tags it does not name and the names no tag of the run has."""
    from .errors import RamtagWarning

    values = [float(value) for value in vocabulary.thresholds]
    missing = []  # positions of the run's tags the file does not name
    for position, tag in enumerate(vocabulary.tags):
        if tag in named:
            values[position] = named[tag]
        else:
            missing.append(position)
    scored = set(vocabulary.tags)
    unused = [name for name in named if name not in scored]
    notes: list[Warning] = []
    if missing:
        kept = {values[position] for position in missing}
        keep = f"{kept.pop():g}" if len(kept) == 1 else "the defaults (the official per-tag ones, 0.5 for open-set tags)"
        notes.append(RamtagWarning(f"{path} has no threshold for {len(missing)} of the {len(vocabulary)} tags of this "
                                   f"run (e.g. {vocabulary.tags[missing[0]]!r}): they keep {keep}"))
    if unused:
        verb = "is" if len(unused) == 1 else "are"
        notes.append(RamtagWarning(f"{path}: {len(unused)} of its tags {verb} not scored in this run (e.g. "
                                   f"{unused[0]!r}), so {'its threshold is' if verb == 'is' else 'their thresholds are'}"
                                   " not used"))
    return values, notes
