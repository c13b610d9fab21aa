"""What ramtag adds to each keyword field, and when its copies of a person's keywords become theirs.

A field that ramtag starts would hide the person's keywords held elsewhere: darktable reads only
``lr:hierarchicalSubject`` once it exists, digiKam only ``digiKam:TagsList``, and Immich, digiKam and
darktable read a sidecar's keywords instead of the photo's. So ramtag starts a field with copies of
the person's keywords (their flatter ones, those inside the photo or its other sidecar: ``inside``)
and records them as its own additions, so that ``clean`` takes them out again; a sidecar also
records which additions are copies (``COPIES``). Once the person's software has written such a
field (it holds values ramtag did not add, or lacks some it did), the copies there are theirs and
stay through re-runs and ``clean``. ``added_keywords`` decides what ramtag adds, copies included.
"""

from __future__ import annotations

from collections.abc import Sequence

FLAT, HIERARCHICAL, TAGS_LIST = "AddedSubject", "AddedHierarchicalSubject", "AddedTagsList"
COPIES = "Copies"  # ramtag's record of which of its additions are copies of the person's keywords


def adopt_copies(own: dict[str, list[str]], present: dict[str, list[str]]) -> dict[str, list[str]]:
    """``own`` (each field's values but ramtag's additions, by record name), with the copies in
    ``present`` (each field's values) counted as the person's where their software wrote the field."""
    adopted = dict(own)
    for field in (HIERARCHICAL, TAGS_LIST):
        if not own[field]:  # only ramtag has written this field: its copies are still its own
            continue
        theirs = {value.casefold() for value in adopted[FLAT]}  # keywords match whatever their case
        if field == TAGS_LIST:
            theirs |= {value.replace("|", "/").casefold() for value in adopted[HIERARCHICAL]}
        mine = {value.casefold() for value in own[field]}
        adopted[field] = [value for value in present[field] if value.casefold() in mine | theirs]
    return adopted


def adopt_recorded_copies(
    person: dict[str, list[str]], present: dict[str, list[str]], owned: dict[str, set[str]], copied: set[str]
) -> dict[str, list[str]]:
    """``person`` with the copies ramtag recorded making (``copied``: of the keywords inside the
    photo, of its other sidecar, of their flatter keywords) counted as theirs in a field their
    software has written since: digiKam writes back every keyword it shows, the copies too."""
    adopted = dict(person)
    for field in (FLAT, HIERARCHICAL, TAGS_LIST):
        written = person[field] or bool(owned[field] - set(present[field]))  # theirs added or removed some
        if written and copied:
            kept = set(person[field])
            adopted[field] = [v for v in present[field] if v in kept or (v in owned[field] and v in copied)]
    # A flat keyword one of their hierarchical ones names is theirs, though spelt like a tag of
    # ramtag's: digiKam writes the name of each keyword it shows (a top-level `building`) there.
    named = {_leaf(v, field) for field in (HIERARCHICAL, TAGS_LIST) for v in adopted[field]} - copied
    if named & owned[FLAT]:
        kept = set(adopted[FLAT])
        adopted[FLAT] = [v for v in present[FLAT] if v in kept or (v in owned[FLAT] and v in named)]
    return adopted


def added_keywords(
    wanted: dict[str, list[str]], person: dict[str, list[str]], elsewhere: dict[str, list[str]] | None = None
) -> dict:
    """What ramtag adds to each field: its keywords the person does not have there already.

    darktable reads only the hierarchical field once it exists, digiKam only TagsList: a field that
    ramtag starts would hide the person's keywords held in the flatter ones or outside these fields
    (``elsewhere``, by field: a photo's IPTC keywords, or the keywords inside the photo a sidecar is
    for), so those are copied in (as ramtag's additions: ``clean`` takes them out again).
    """
    outside = {FLAT: [], HIERARCHICAL: [], TAGS_LIST: [], **(elsewhere or {})}
    outside[TAGS_LIST] = [path for path in outside[TAGS_LIST] if not _automatic(path.replace("/", "|"))]
    person_paths = _people(person[HIERARCHICAL] or _as_paths(person[TAGS_LIST]))
    outside_paths = _people(outside[HIERARCHICAL] or _as_paths(outside[TAGS_LIST]))
    person_flat = person[FLAT] or distinct([*_leaves(person_paths), *outside[FLAT]]) or _leaves(outside_paths)
    # A tag the person has already, in any case and in any field (`Night` beside ramtag's `night`), is
    # not added in another: digiKam writes each keyword's name into dc:subject, a second `night`.
    # The three fields hold one entry per tag, in one order (``xmp._wanted``): dropped together.
    have = {keyword.casefold() for keyword in [*person_flat, *_leaves(person_paths)]}
    kept = [value.casefold() not in have for value in wanted[FLAT]]
    wanted = {key: [v for v, keep in zip(values, kept) if keep] if key in (FLAT, HIERARCHICAL, TAGS_LIST) else list(values)
              for key, values in wanted.items()}
    if wanted[FLAT] and not person[FLAT]:
        wanted[FLAT] = [*person_flat, *wanted[FLAT]]
    # The person's copies go first: where one is spelt like a tag in another case, theirs is kept.
    if wanted[HIERARCHICAL] and not person[HIERARCHICAL]:
        wanted[HIERARCHICAL] = [*hierarchy_of(person_flat, person_paths or outside_paths), *wanted[HIERARCHICAL]]
    if wanted[TAGS_LIST] and not person[TAGS_LIST]:
        paths = [v.replace("|", "/") for v in hierarchy_of(person_flat, _people(person[HIERARCHICAL]) or outside_paths)]
        copies = (person[HIERARCHICAL] and paths) or outside[TAGS_LIST] or paths
        wanted[TAGS_LIST] = [*copies, *wanted[TAGS_LIST]]
    # Keywords match whatever their case: Lightroom and digiKam hold one keyword `Dog`, so a `dog`
    # beside the person's `Dog` would be a second one.
    added = {key: _missing(values, person[key]) for key, values in wanted.items()}
    # In a field the person's software writes, a value spelt like one of their flatter keywords
    # (a tag named `dog` with --xmp-parent "" beside their own `dog`) would read as their copy of it
    # (``adopt_copies``), and stay through re-runs and clean: they have that keyword already.
    theirs = list(person_flat)
    if person[HIERARCHICAL]:
        added[HIERARCHICAL] = _missing(added[HIERARCHICAL], theirs)
    if person[TAGS_LIST]:
        theirs += [v.replace("|", "/") for v in person[HIERARCHICAL]]
        added[TAGS_LIST] = _missing(added[TAGS_LIST], theirs)
    return added


def _automatic(path: str) -> bool:
    """darktable's own tags (``darktable|format|dng``, ``darktable|exported``): what it notes of a
    photo, not a keyword the person gave; never copied into another field or sidecar."""
    return path.casefold().startswith("darktable|")


def _people(paths: Sequence[str]) -> list[str]:
    return [path for path in paths if not _automatic(path)]


def _as_paths(tags_list: Sequence[str]) -> list[str]:
    return [value.replace("/", "|") for value in tags_list]


def _leaves(paths: Sequence[str]) -> list[str]:
    return distinct([path.rpartition("|")[2] for path in paths])


def _leaf(value: str, field: str) -> str:
    """A keyword's own name: after its hierarchy's last separator in the hierarchical fields."""
    separator = {HIERARCHICAL: "|", TAGS_LIST: "/"}.get(field)
    return value.rpartition(separator)[2] if separator else value


def hierarchy_of(flat: Sequence[str], paths: Sequence[str]) -> list[str]:
    """A hierarchical field's keywords: ``paths``, then the ``flat`` keywords none of them names
    (top-level ones, as Lightroom lays them out)."""
    named = {part.casefold() for path in paths for part in path.split("|")}
    return distinct([*paths, *(keyword for keyword in flat if keyword.casefold() not in named)])


def distinct(values: Sequence[str]) -> list[str]:
    """Each keyword once whatever its case, in order, as first spelt."""
    return _missing(values, ())


def _missing(values: Sequence[str], present: Sequence[str]) -> list[str]:
    """``values`` that ``present`` lacks, compared without case, each once (the first spelling)."""
    seen = {value.casefold() for value in present}
    missing = []
    for value in values:
        if value.casefold() not in seen:
            seen.add(value.casefold())
            missing.append(value)
    return missing
