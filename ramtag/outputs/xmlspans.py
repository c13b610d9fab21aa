"""An XML document as byte spans: parse safely, learn where each element is, splice edits in.

Re-serialising a parsed tree rewrites every byte of a file (quotes, entities, whitespace, prefixes);
editing a person's sidecar that way would touch what ramtag does not own. Instead expat reports the
byte offset of each event, so every element knows its span, and an edit replaces exactly one range:
the rest of the file comes back byte for byte.

Safe by construction: a DOCTYPE (hence any entity declaration, internal or external) is refused, and
expat never fetches anything. Only UTF-8 is accepted, so that spliced text and file agree.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from xml.parsers import expat

from ..errors import RamtagError

XML_NS = "http://www.w3.org/XML/1998/namespace"
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_SPACE = (b" ", b"\t", b"\n", b"\r")

Edit = tuple[int, int, str]
"""Replace bytes ``start:end`` of the document by this text (``start == end``: insert)."""


class XmlError(RamtagError):
    """A document that is not well-formed, or that ramtag refuses to read (DOCTYPE, not UTF-8)."""


@dataclass(eq=False)
class Element:
    """One element: its names, attributes as written, and where it is in the bytes."""

    name: str  # as written, prefix included
    uri: str  # its namespace, resolved
    local: str
    attrs: list[tuple[str, str]]  # as written and in order, namespace declarations included
    scope: dict[str, str]  # prefix -> namespace in force inside the element
    start: int
    inner: int = -1  # where its start tag ends (== end for an empty-element tag)
    end: int = -1
    text: str = ""  # its own character data, decoded
    children: list[Element] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """``"rdf:"`` for ``rdf:Bag``, ``""`` for an unprefixed name: to name new siblings alike."""
        prefix = self.name.rpartition(":")[0]
        return f"{prefix}:" if prefix else ""

    def resolved_attrs(self) -> Iterator[tuple[str, str, str]]:
        """(namespace, local name, value) of each attribute but the namespace declarations."""
        for name, value in self.attrs:
            if name == "xmlns" or name.startswith("xmlns:"):
                continue
            prefix, _, local = name.rpartition(":")
            yield (self.scope.get(prefix, "") if prefix else ""), local, value

    def find(self, uri: str, local: str) -> Iterator[Element]:
        return (child for child in self.children if child.uri == uri and child.local == local)

    def walk(self) -> Iterator[Element]:
        """This element and all below it, breadth first."""
        pending = [self]
        while pending:
            element = pending.pop(0)
            yield element
            pending.extend(element.children)


def parse(data: bytes) -> Element:
    """The root element, every element knowing its byte span."""
    if data[:2] in (b"\xfe\xff", b"\xff\xfe") or data[:4] in (b"\x00\x00\xfe\xff", b"\x00\x00\x00<"):
        raise XmlError("not UTF-8; only UTF-8 is edited")
    parser = expat.ParserCreate()
    parser.ordered_attributes = True
    stack: list[Element] = []
    roots: list[Element] = []

    def boundary(*_: object) -> None:  # any event ends the start tag of the open element
        if stack and stack[-1].inner < 0:
            stack[-1].inner = parser.CurrentByteIndex

    def start(name: str, flat: list[str]) -> None:
        boundary()
        attrs = list(zip(flat[::2], flat[1::2]))
        scope = dict(stack[-1].scope) if stack else {"xml": XML_NS}
        scope.update((key[6:], value) for key, value in attrs if key == "xmlns" or key.startswith("xmlns:"))
        prefix, _, local = name.rpartition(":")
        element = Element(name, scope.get(prefix, ""), local, attrs, scope, parser.CurrentByteIndex)
        (stack[-1].children if stack else roots).append(element)
        stack.append(element)

    def end(_name: str) -> None:
        element = stack.pop()
        at = parser.CurrentByteIndex
        if element.inner < 0 and data[at - 2 : at] == b"/>":  # <a/> is reported just after itself
            element.inner = element.end = at
            return
        if element.inner < 0:
            element.inner = at
        element.end = data.index(b">", at) + 1  # an end tag has no attributes to hide a '>'

    def text(value: str) -> None:
        boundary()
        if stack:
            stack[-1].text += value

    def refuse(*_: object) -> None:
        raise XmlError("has a DOCTYPE; documents that can declare entities are not read")

    def declaration(_version: str, encoding: str | None, _standalone: int) -> None:
        if encoding and encoding.lower() not in ("utf-8", "utf8"):
            raise XmlError(f"encoded as {encoding}; only UTF-8 is edited")

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.CommentHandler = parser.ProcessingInstructionHandler = boundary
    parser.StartCdataSectionHandler = parser.EndCdataSectionHandler = boundary
    parser.StartDoctypeDeclHandler = parser.EntityDeclHandler = refuse
    parser.XmlDeclHandler = declaration
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlError(f"not valid XML ({exc})") from None
    return roots[0]


def xml_text(value: str) -> str:
    """``value`` with the characters XML 1.0 cannot hold (control characters) as U+FFFD."""
    return _NOT_XML.sub("\ufffd", value)


def escape(value: str, quote: bool = False) -> str:
    """Text for element content, or (``quote``) for a double-quoted attribute value."""
    value = xml_text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if quote:
        for char, ref in (('"', "&quot;"), ("\n", "&#10;"), ("\r", "&#13;"), ("\t", "&#9;")):
            value = value.replace(char, ref)
    return value


def indent_at(data: bytes, at: int) -> str:
    """The whitespace opening the line of ``at``, when only whitespace precedes it there."""
    before = data[data.rfind(b"\n", 0, at) + 1 : at]
    return before.decode("utf-8") if not before.strip(b" \t") else ""


def removal(data: bytes, element: Element, floor: int) -> Edit:
    """Take ``element`` out with the whitespace before it (not below ``floor``): the inverse of
    inserting ``"\\n" + indent + element`` after its previous sibling."""
    start = element.start
    while start > floor and data[start - 1 : start] in _SPACE:
        start -= 1
    return start, element.end, ""


def splice(data: bytes, edits: Sequence[Edit]) -> bytes:
    out, at = [], 0
    for start, end, text in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        if start < at:
            raise AssertionError(f"overlapping edits at byte {start}")  # a bug, never a user's doing
        out += [data[at:start], text.encode("utf-8")]
        at = end
    out.append(data[at:])
    return b"".join(out)
