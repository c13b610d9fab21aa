"""When ramtag's copies of a person's keywords become the person's own.

ramtag starts ``lr:hierarchicalSubject`` and ``digiKam:TagsList`` only with the person's flatter
keywords copied in (darktable reads only the hierarchical field once it exists, digiKam only
TagsList), and records the copies as its own additions so that ``clean`` takes them out again. Once
the person's software has written such a field itself (it holds values ramtag did not add), the
field is the person's: the copies of their keywords stay through re-runs and ``clean``.
"""

from __future__ import annotations

FLAT, HIERARCHICAL, TAGS_LIST = "AddedSubject", "AddedHierarchicalSubject", "AddedTagsList"


def adopt_copies(own: dict[str, list[str]], present: dict[str, list[str]]) -> dict[str, list[str]]:
    """``own`` (each field's values but ramtag's additions, by record name), with the copies in
    ``present`` (each field's values) counted as the person's where their software wrote the field."""
    adopted = dict(own)
    for field in (HIERARCHICAL, TAGS_LIST):
        if not own[field]:  # only ramtag has written this field: its copies are still its own
            continue
        theirs = set(adopted[FLAT])
        if field == TAGS_LIST:
            theirs |= {value.replace("|", "/") for value in adopted[HIERARCHICAL]}
        mine = set(own[field])
        adopted[field] = [value for value in present[field] if value in mine or value in theirs]
    return adopted
