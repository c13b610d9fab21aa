"""The keywords a photo holds inside it, for a sidecar ramtag starts beside it.

Immich takes a sidecar's keyword fields over the photo's, and digiKam and darktable read the sidecar
once there is one: a sidecar that ramtag starts for a JPEG would hide the keywords inside the JPEG.
So those keywords are copied into it, as ramtag's additions (``clean`` takes them out again), and
only into a sidecar that holds no keywords of the person's (one their software wrote has its own).
Once their software writes into that sidecar, the copies it wrote back are theirs
(``copies.adopt_photo_copies``).

They are read from the file's metadata by Pillow, which reads up to the image data and decodes
none of it: the XMP fields, and ``IPTC:Keywords`` where the XMP has no ``dc:subject`` or where the
IPTC was changed after it (the Photoshop block's digest says so: readers then take the IPTC too,
as the Metadata Working Group's rule has it). What ramtag itself put into the photo (``--embed``)
is left out. A proprietary camera raw holds no keywords here (photo software keeps them in its
``IMG_1.xmp``), nor does a file Pillow cannot open (a damaged file, one over Pillow's pixel limit). The keywords of the image's sidecar of the other naming (``IMG_1.xmp`` beside a new
``IMG_1.JPG.xmp``) are the person's too (``keywords_in``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from .copies import FLAT, HIERARCHICAL, TAGS_LIST, distinct, hierarchy_of
from .xmp import FIELDS, RAMTAG, SidecarError, _descriptions, _items

_HEIF = frozenset({".heic", ".heif", ".avif", ".hif"})
_IPTC_DATA, _IPTC_DIGEST = 0x0404, 0x0425  # Photoshop image resources: the IPTC block, its MD5


def no_keywords() -> dict[str, list[str]]:
    return {FLAT: [], HIERARCHICAL: [], TAGS_LIST: []}


def photo_keywords(image: Path) -> dict[str, list[str]]:
    """The person's keywords inside the photo at ``image``, by field (``copies``' names)."""
    from PIL import Image, IptcImagePlugin

    from ..inputs.decode import heif_ready
    from ..inputs.raw import is_proprietary_raw

    if is_proprietary_raw(image.name):
        return no_keywords()
    if image.suffix.lower() in _HEIF:
        heif_ready()
    try:
        with Image.open(image) as photo:
            packet = photo.info.get("xmp") or photo.info.get("XML:com.adobe.xmp")
            iptc = IptcImagePlugin.getiptcinfo(photo)  # JPEG (MPO too) and TIFF; None for the others
            photoshop = photo.info.get("photoshop") or {}
    except Exception:  # noqa: BLE001 - whatever Pillow cannot read holds no keywords for this purpose
        return no_keywords()
    found, ramtags = keywords_in(packet.encode("utf-8") if isinstance(packet, str) else packet)
    if iptc and (not found[FLAT] or _changed_since(photoshop)):
        own = [k for k in _iptc_keywords(iptc) if k not in ramtags.get("AddedKeywords", ())]
        found[FLAT] = list(dict.fromkeys([*found[FLAT], *own]))
    if found[HIERARCHICAL]:
        found[HIERARCHICAL] = hierarchy_of(found[FLAT], found[HIERARCHICAL])
    return found


def keywords_in(packet: bytes | None) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """Each keyword field of an XMP packet (or sidecar) less ramtag's additions, and those
    additions by record name."""
    if not packet:
        return no_keywords(), {}
    try:
        descriptions = _descriptions(packet.strip(b"\x00 \t\r\n"))[1]
    except SidecarError:
        return no_keywords(), {}
    ramtags = {
        child.local: {entry.text for entry in _items(child)[1]}
        for description in descriptions for child in description.children if child.uri == RAMTAG
    }
    found = {}
    for field in FIELDS:
        values = [
            entry.text for description in descriptions for prop in description.find(field.uri, field.local)
            for entry in _items(prop)[1]
        ]
        found[field.record] = [v for v in dict.fromkeys(values) if v and v not in ramtags.get(field.record, ())]
    return found, ramtags


def joined(*sources: dict[str, list[str]]) -> dict[str, list[str]]:
    """The keywords of several places, each field's once whatever its case (the first spelling), in order."""
    return {field: distinct([v for source in sources for v in source[field]]) for field in no_keywords()}


def _changed_since(photoshop: dict) -> bool:
    """Whether the IPTC block was changed after the XMP was written: its digest no longer matches."""
    data, digest = photoshop.get(_IPTC_DATA), photoshop.get(_IPTC_DIGEST)
    return bool(data and digest) and hashlib.md5(data).digest() != digest[:16]  # noqa: S324 - the format's own hash


def _iptc_keywords(iptc: dict) -> list[str]:
    """``IPTC:Keywords`` as text: UTF-8 where the bytes are (declared or not, as many programs
    write it), Latin-1 otherwise."""
    raw = iptc.get((2, 25)) or []
    keywords = []
    for value in raw if isinstance(raw, list) else [raw]:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            text = value.decode("latin-1")
        if text.strip():
            keywords.append(text.strip())
    return list(dict.fromkeys(keywords))
