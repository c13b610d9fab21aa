"""XMP sidecars: ramtag's keywords merged into what photo software already wrote, never over it.

A sidecar holds a person's work (Lightroom develop settings, darktable history, ratings, their own
keywords), so it is edited in place (``xmlspans``): only ramtag's own entries' bytes ever change.

What ramtag owns is written down in the sidecar, in its own namespace: the keywords it added to
each field (copies of the person's too, until adopted: ``copies``), their scores and settings. A
later run takes out exactly those and puts in its new ones; ``clean`` takes them all out. Additions
go after the last kept entry, indented like it, and removals take their leading whitespace, so
cleaning after a run gives back the original bytes. A sidecar that cannot be parsed is never written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..errors import RamtagError
from .copies import COPIES, added_keywords, adopt_copies, adopt_recorded_copies
from .xmlspans import XML_NS, Edit, Element, XmlError, escape, indent_at, parse, removal, splice, xml_text

if TYPE_CHECKING:
    from ..tagger import TagResult
    from .sidecars import Provenance

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
DC = "http://purl.org/dc/elements/1.1/"
LR = "http://ns.adobe.com/lightroom/1.0/"
DIGIKAM = "http://www.digikam.org/ns/1.0/"
RAMTAG = "https://ramtag.invalid/ns/xmp/1.0/"  # a name only: the .invalid domain never resolves
MAX_SIDECAR_BYTES = 64 * 1024 * 1024
_STEP = " "  # one space per level, as Adobe's toolkit, exiv2 and exiftool indent
_NOT_PROPERTIES = {(RDF, "about"), (RDF, "ID"), (RDF, "nodeID")}
_SIMPLE = ("Settings", "Model", "Checkpoint", "Thresholds", "Image")  # Image: the file's stamp, when known


class SidecarError(RamtagError):
    """A sidecar ramtag leaves alone: not XML, not XMP, not UTF-8, unreadable or unwritable."""


@dataclass(frozen=True)
class _Field:
    """A keyword field photo software reads, and the name of ramtag's record of its additions."""

    record: str
    uri: str
    prefix: str
    local: str
    container: str


FIELDS = (
    _Field("AddedSubject", DC, "dc", "subject", "Bag"),  # flat: read by everything
    _Field("AddedHierarchicalSubject", LR, "lr", "hierarchicalSubject", "Bag"),  # Lightroom, darktable
    _Field("AddedTagsList", DIGIKAM, "digiKam", "TagsList", "Seq"),  # digiKam
)


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reading ---------------------------------------------------------------------------------------

State = dict[str, Any]  # ramtag's record: _SIMPLE values, Tags, and one list per FIELDS record


def _descriptions(data: bytes) -> tuple[Element, list[Element]]:
    """rdf:RDF and its rdf:Description children, or why this is no sidecar to edit."""
    try:
        root = parse(data)
    except XmlError as exc:
        raise SidecarError(str(exc)) from None
    rdf = next((e for e in root.walk() if e.uri == RDF and e.local == "RDF"), None)
    if rdf is None:
        raise SidecarError("not an XMP sidecar (no rdf:RDF element)")
    return rdf, list(rdf.find(RDF, "Description"))


def _properties(description: Element) -> list[tuple[str, str, str]]:
    """Its attributes that are XMP properties (not rdf:about, xml:lang, namespace declarations)."""
    attrs = description.resolved_attrs()
    return [a for a in attrs if a[0] not in ("", XML_NS) and a[:2] not in _NOT_PROPERTIES]


def _items(prop: Element) -> tuple[Element | None, list[Element]]:
    """A list property's container (rdf:Bag, Seq or Alt) and its entries."""
    for child in prop.children:
        if child.uri == RDF and child.local in ("Bag", "Seq", "Alt"):
            return child, list(child.find(RDF, "li"))
    return None, []


def _struct(item: Element) -> dict[str, str]:
    """A struct's ramtag fields however spelled: parseType Resource, a Description, attributes."""
    fields: dict[str, str] = {}
    for holder in (item, *item.find(RDF, "Description")):
        fields.update((local, value) for uri, local, value in holder.resolved_attrs() if uri == RAMTAG)
        fields.update((child.local, child.text) for child in holder.children if child.uri == RAMTAG)
    return fields


def _read_state(descriptions: Sequence[Element]) -> tuple[State | None, str]:
    """ramtag's record (None if the sidecar has none) and its date; attribute form read too."""
    state: State = {**dict.fromkeys(_SIMPLE, ""), "Tags": [], **{f.record: [] for f in FIELDS}, COPIES: []}
    date, seen = "", False
    for description in descriptions:
        simple = [(local, value) for uri, local, value in _properties(description) if uri == RAMTAG]
        simple += [(c.local, c.text) for c in description.children if c.uri == RAMTAG and not c.children]
        for local, value in simple:
            seen = True
            if local in _SIMPLE:
                state[local] = value.strip()
            elif local == "Date":
                date = value.strip()
        for child in description.children:
            if child.uri == RAMTAG and child.children:
                seen = True
                entries = _items(child)[1]
                if child.local == "Tags":
                    fields = [_struct(entry) for entry in entries]
                    state["Tags"] = [(f.get("Name", ""), f.get("NameZh", ""), f.get("Score", "")) for f in fields]
                elif child.local in state:
                    state[child.local] = [entry.text for entry in entries]
    return (state if seen else None), date


# -- what ramtag wants now -------------------------------------------------------------------------


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


def _wanted(provenance: Provenance, result: TagResult) -> dict[str, list[str]]:
    """Each field's keywords for these tags: ``tag``, ``parent|tag``, ``parent/tag``."""
    zh = result.tags_zh or [None] * len(result.tags)
    names = []
    for en, chinese in zip(result.tags, zh):
        if provenance.lang in ("en", "both"):
            names.append(en)
        if provenance.lang in ("zh", "both") and chinese:
            names.append(chinese)
    names = _unique(xml_text(name) for name in names)
    parent = xml_text(provenance.parent)
    return {
        "AddedSubject": names,
        "AddedHierarchicalSubject": [f"{parent}|{n}" if parent else n for n in names],
        "AddedTagsList": [f"{parent.replace('|', '/')}/{n}" if parent else n for n in names],
    }


def _scored(provenance: Provenance, result: TagResult) -> list[tuple[str, str, str]]:
    """(name, Chinese name if the keywords use it, score to 4 places) per tag, best first."""
    zh = result.tags_zh if provenance.lang != "en" and result.tags_zh else [""] * len(result.tags)
    return [(xml_text(t), xml_text(z), f"{s:.4f}") for t, s, z in zip(result.tags, result.scores, zh)]


# -- writing ---------------------------------------------------------------------------------------


class _Writer:
    """Text of new elements, with ramtag's prefixes declared wherever they are not in force."""

    def __init__(self, scope: dict[str, str]) -> None:
        self.scope = scope

    def declare(self, *pairs: tuple[str, str]) -> str:
        return "".join(f' xmlns:{p}="{escape(u, True)}"' for p, u in pairs if self.scope.get(p) != u)

    def bag(self, field: _Field, items: Sequence[str], indent: str) -> str:
        name, kind = f"{field.prefix}:{field.local}", field.container
        one, two = indent + _STEP, indent + _STEP * 2
        lines = [f"<{name}{self.declare((field.prefix, field.uri), ('rdf', RDF))}>", f"{one}<rdf:{kind}>"]
        lines += [f"{two}<rdf:li>{escape(item)}</rdf:li>" for item in items]
        return "\n".join([*lines, f"{one}</rdf:{kind}>", f"{indent}</{name}>"])

    def simple(self, local: str, value: str) -> str:
        return f"<ramtag:{local}{self.declare(('ramtag', RAMTAG))}>{escape(value)}</ramtag:{local}>"

    def tags(self, tags: Sequence[tuple[str, str, str]], indent: str) -> str:
        one, two, three = (indent + _STEP * n for n in (1, 2, 3))
        lines = [f"<ramtag:Tags{self.declare(('ramtag', RAMTAG), ('rdf', RDF))}>", f"{one}<rdf:Seq>"]
        for name, zh, score in tags:
            lines.append(f'{two}<rdf:li rdf:parseType="Resource">')
            lines.append(f"{three}<ramtag:Name>{escape(name)}</ramtag:Name>")
            if zh:
                lines.append(f"{three}<ramtag:NameZh>{escape(zh)}</ramtag:NameZh>")
            lines += [f"{three}<ramtag:Score>{score}</ramtag:Score>", f"{two}</rdf:li>"]
        return "\n".join([*lines, f"{one}</rdf:Seq>", f"{indent}</ramtag:Tags>"])

    def block(self, state: State, date: str, created: dict[str, list[str]], indent: str) -> list[str]:
        """The keyword fields no description holds yet, then ramtag's record."""
        parts = [self.bag(f, created[f.record], indent) for f in FIELDS if created.get(f.record)]
        parts += [self.simple(key, state[key]) for key in _SIMPLE if state[key] or key != "Image"]
        parts.append(self.simple("Date", date))
        if state["Tags"]:
            parts.append(self.tags(state["Tags"], indent))
        records = [_Field(name, RAMTAG, "ramtag", name, "Bag") for name in (*(f.record for f in FIELDS), COPIES)
                   if state.get(name)]
        return parts + [self.bag(record, state[record.local], indent) for record in records]


def merge(
    data: bytes | None,
    provenance: Provenance | None,
    result: TagResult | None = None,
    *,
    now: Callable[[], str] = _utc_now,
    image: str = "",
    inside: Callable[[], dict[str, list[str]]] | None = None,
) -> bytes | None:
    """The sidecar with ramtag's entries replaced by ``result``'s, or removed (``provenance`` None).

    ``image`` describes the version of the image the tags are of (its size and time): a re-run
    refreshes a sidecar whose image has changed since. ``inside`` gives the keywords outside the
    sidecar (inside the image, in its other sidecar), by field: copied in where the sidecar holds
    none of the person's or copies of them already (``outputs.inside``).

    Returns ``data`` itself when nothing changes (an unchanged record keeps its date, so a rerun is
    byte-identical), and ``None`` when removing leaves nothing at all (a sidecar only ramtag wrote).
    """
    source = data if data is not None else _EMPTY
    if len(source) > MAX_SIDECAR_BYTES:
        raise SidecarError(f"larger than {MAX_SIDECAR_BYTES >> 20} MiB; not a sidecar ramtag edits")
    rdf, descriptions = _descriptions(source)
    old, old_date = _read_state(descriptions)
    props = {f.record: [c for d in descriptions for c in d.find(f.uri, f.local)] for f in FIELDS}
    present = {key: [item.text for p in found for item in _items(p)[1]] for key, found in props.items()}
    owned = {key: set(old[key]) if old else set() for key in props}
    person = adopt_copies({key: [v for v in values if v not in owned[key]] for key, values in present.items()}, present)
    copied = set(old[COPIES]) if old else set()  # copies ramtag made of the person's keywords
    person = adopt_recorded_copies(person, present, owned, copied)  # those their software wrote back
    owned = {key: owned[key] - set(person[key]) for key in owned}  # less the copies the person adopted
    new: State | None = None
    added: dict[str, list[str]] = {key: [] for key in props}
    if provenance is not None:
        if result is None:
            raise ValueError("merge needs the result to write")
        # The keywords where the sidecar's must not hide them: for a sidecar with none of the
        # person's, and one that holds copies of them (kept up: the photo's paths head its hierarchy).
        theirs = inside() if inside is not None and (copied or not any(person.values())) else None
        wanted = _wanted(provenance, result)
        added = added_keywords(wanted, person, theirs)
        ramtags = {value for values in wanted.values() for value in values}
        new = {
            "Settings": provenance.settings, "Model": provenance.model,
            "Checkpoint": provenance.checkpoint_sha256, "Thresholds": provenance.thresholds, "Image": image,
            "Tags": _scored(provenance, result), **added,
            COPIES: _unique(v for values in added.values() for v in values if v not in ramtags),
        }
    in_place = all(
        set(added[key]) <= set(present[key]) and not (owned[key] - set(added[key])) & set(present[key])
        for key in props
    )
    if new == old and in_place:
        return data
    date = old_date if new == old and old_date else now()

    edits: list[Edit] = []
    removed: set[int] = set()  # ids of the elements taken out whole
    created = _edit_keywords(source, descriptions, props, present, owned, added, edits, removed)
    if new is not None:
        _place_record(source, rdf, descriptions, new, date, created, edits, removed)
    else:
        for description in descriptions:
            for child in (c for c in description.children if c.uri == RAMTAG):
                edits.append(removal(source, child, description.inner))
                removed.add(id(child))
    for description in descriptions:
        if any(uri == RAMTAG for uri, _, _ in _properties(description)):
            edits.append((description.start, description.inner, _start_tag_without_ramtag(description)))
    remaining = _drop_emptied(source, rdf, descriptions, removed, edits)
    if new is None and not remaining and len(rdf.children) == len(descriptions):
        return None
    return splice(source, edits)


_EMPTY = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="ramtag">\n'
    f' <rdf:RDF xmlns:rdf="{RDF}">\n'
    " </rdf:RDF>\n"
    "</x:xmpmeta>\n"
).encode("utf-8")


def _edit_keywords(
    data: bytes,
    descriptions: list[Element],
    props: dict[str, list[Element]],
    present: dict[str, list[str]],
    owned: dict[str, set[str]],
    added: dict[str, list[str]],
    edits: list[Edit],
    removed: set[int],
) -> dict[str, list[str]]:
    """Entries out of and into the keyword fields there are; returns those for fields to create."""
    created = {}
    for f in FIELDS:
        drop = owned[f.record] - set(added[f.record])
        missing = [v for v in added[f.record] if v not in present[f.record]]
        if not props[f.record]:
            created[f.record] = missing
        for number, prop in enumerate(props[f.record]):
            container, items = _items(prop)
            if container is None:
                raise SidecarError(f"{prop.name} is not a list; ramtag leaves this sidecar alone")
            adding = missing if number == 0 else []
            kept = [item for item in items if item.text not in drop]
            if not kept and not adding and items:  # emptied by ramtag: the field goes
                holder = next(d for d in descriptions if any(c is prop for c in d.children))
                edits.append(removal(data, prop, holder.inner))
                removed.add(id(prop))
                continue
            edits += [removal(data, item, container.inner) for item in items if item.text in drop]
            if adding:
                edits.append(_insertion(data, container, kept, items, adding))
    return created


def _insertion(
    data: bytes, container: Element, kept: list[Element], items: list[Element], adding: list[str]
) -> Edit:
    """New entries after the last kept one, indented like the entries there."""
    li = f"{container.prefix}li"
    if container.inner == container.end:  # <rdf:Bag/>: written out again, with its entries
        outer = indent_at(data, container.start)
        entries = "".join(f"\n{outer}{_STEP}<{li}>{escape(v)}</{li}>" for v in adding)
        tag = data[container.start : container.end - 2].decode("utf-8").rstrip()
        return container.start, container.end, f"{tag}>{entries}\n{outer}</{container.name}>"
    indent = indent_at(data, items[0].start) if items else indent_at(data, container.start) + _STEP
    at = kept[-1].end if kept else container.inner
    return at, at, "".join(f"\n{indent}<{li}>{escape(v)}</{li}>" for v in adding)


def _place_record(
    data: bytes,
    rdf: Element,
    descriptions: list[Element],
    state: State,
    date: str,
    created: dict[str, list[str]],
    edits: list[Edit],
    removed: set[int],
) -> None:
    """ramtag's record where the previous one began, else in a description of its own at the end."""
    previous = [(d, c) for d in descriptions for c in d.children if c.uri == RAMTAG]
    if previous:
        holder, first = previous[0]
        indent = indent_at(data, first.start)
        parts = _Writer(holder.scope).block(state, date, created, indent)
        edits.append((first.start, first.end, f"\n{indent}".join(parts)))
        for description, child in previous[1:]:
            edits.append(removal(data, child, description.inner))
            removed.add(id(child))
        return
    about = next((v for d in descriptions for u, n, v in d.resolved_attrs() if (u, n) == (RDF, "about")), "")
    indent = indent_at(data, descriptions[-1].start) if descriptions else indent_at(data, rdf.start) + _STEP
    used = [("rdf", RDF), *((f.prefix, f.uri) for f in FIELDS if created.get(f.record)), ("ramtag", RAMTAG)]
    head = f'<rdf:Description rdf:about="{escape(about, True)}"{_Writer(rdf.scope).declare(*used)}>'
    parts = _Writer({**rdf.scope, **dict(used)}).block(state, date, created, indent + _STEP)
    body = "".join(f"\n{indent}{_STEP}{part}" for part in parts)
    at = descriptions[-1].end if descriptions else rdf.inner
    edits.append((at, at, f"\n{indent}{head}{body}\n{indent}</rdf:Description>"))


def _start_tag_without_ramtag(element: Element) -> str:
    """The start tag again without ramtag's attribute-form properties (another tool's compact form)."""
    def ramtag_property(name: str) -> bool:
        prefix, colon, _ = name.partition(":")
        return bool(colon) and prefix != "xmlns" and element.scope.get(prefix) == RAMTAG

    attrs = "".join(f' {n}="{escape(v, True)}"' for n, v in element.attrs if not ramtag_property(n))
    return f"<{element.name}{attrs}{'/>' if element.inner == element.end else '>'}"


def _drop_emptied(
    data: bytes, rdf: Element, descriptions: list[Element], removed: set[int], edits: list[Edit]
) -> list[Element]:
    """Take out whole each description ramtag's removals left without any property; the rest."""
    remaining = []
    for description in descriptions:
        attrs = _properties(description)
        touched = any(id(c) in removed for c in description.children) or any(a[0] == RAMTAG for a in attrs)
        emptied = all(id(c) in removed for c in description.children) and all(a[0] == RAMTAG for a in attrs)
        if not (touched and emptied):
            remaining.append(description)
            continue
        start, end, _ = gone = removal(data, description, rdf.inner)
        edits[:] = [e for e in edits if not (start <= e[0] and e[1] <= end and (e[0], e[1]) != (end, end))]
        edits.append(gone)
    return remaining
