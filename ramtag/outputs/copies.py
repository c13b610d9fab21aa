"""When ramtag's copies of a person's keywords become the person's own.

ramtag starts ``lr:hierarchicalSubject`` and ``digiKam:TagsList`` only with the person's flatter
keywords copied in (darktable reads only the hierarchical field once it exists, digiKam only
TagsList), and records the copies as its own additions so that ``clean`` takes them out again. Once
the person's software has written such a field itself (it holds values ramtag did not add), the
field is the person's: the copies of their keywords stay through re-runs and ``clean``.
``added_keywords`` decides what ramtag adds to each field, copies included.
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
        if person[field] and copied:
            kept = set(person[field])
            adopted[field] = [v for v in present[field] if v in kept or (v in owned[field] and v in copied)]
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
    wanted = {key: [*outside[FLAT], *v] if key == FLAT and v and not person[FLAT] else list(v) for key, v in wanted.items()}
    person_flat = person[FLAT] or list(outside[FLAT])
    # The person's copies go first: where one is spelt like a tag in another case, theirs is kept.
    if wanted[HIERARCHICAL] and not person[HIERARCHICAL]:
        wanted[HIERARCHICAL] = [*hierarchy_of(person_flat, outside[HIERARCHICAL]), *wanted[HIERARCHICAL]]
    if wanted[TAGS_LIST] and not person[TAGS_LIST]:
        paths = [v.replace("|", "/") for v in hierarchy_of(person_flat, person[HIERARCHICAL] or outside[HIERARCHICAL])]
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


def hierarchy_of(flat: Sequence[str], paths: Sequence[str]) -> list[str]:
    """A hierarchical field's keywords: ``paths``, then the ``flat`` keywords none of them names
    (top-level ones, as Lightroom lays them out)."""
    named = {part.casefold() for path in paths for part in path.split("|")}
    return _missing([*paths, *(keyword for keyword in flat if keyword.casefold() not in named)], ())


def _missing(values: Sequence[str], present: Sequence[str]) -> list[str]:
    """``values`` that ``present`` lacks, compared without case, each once (the first spelling)."""
    seen = {value.casefold() for value in present}
    missing = []
    for value in values:
        if value.casefold() not in seen:
            seen.add(value.casefold())
            missing.append(value)
    return missing
