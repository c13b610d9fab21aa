"""The keywords a photo holds inside it, for a sidecar ramtag starts beside it.

Immich takes a sidecar's keyword fields over the photo's, and digiKam and darktable read the sidecar
once there is one: a sidecar that ramtag starts for a JPEG would hide the keywords inside the JPEG.
So those keywords are copied into it, as ramtag's additions (``clean`` takes them out again), and
only into a sidecar that holds no keywords of the person's (one their software wrote has its own).

They are read from the file's metadata by Pillow, which reads up to the image data and decodes
none of it: the XMP fields, and ``IPTC:Keywords`` when the XMP has no ``dc:subject`` (the Metadata
Working Group's rule, as readers apply it). What ramtag itself put into the photo (``--embed``) is
left out. A file Pillow cannot open (a camera raw, a damaged file) holds no keywords here.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .copies import FLAT, HIERARCHICAL, TAGS_LIST
from .xmp import FIELDS, RAMTAG, SidecarError, _descriptions, _items

_HEIF = frozenset({".heic", ".heif", ".avif", ".hif"})
_NONE: dict[str, list[str]] = {FLAT: [], HIERARCHICAL: [], TAGS_LIST: []}


def photo_keywords(image: Path) -> dict[str, list[str]]:
    """The person's keywords inside the photo at ``image``, by field (``copies``' names)."""
    from PIL import Image, IptcImagePlugin

    if image.suffix.lower() in _HEIF:
        from ..inputs.decode import _heif_ready

        _heif_ready()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's warnings about the image data are not ours to show
            with Image.open(image) as photo:
                packet = photo.info.get("xmp") or photo.info.get("XML:com.adobe.xmp")
                iptc = IptcImagePlugin.getiptcinfo(photo) if photo.format in ("JPEG", "TIFF") else None
    except Exception:  # noqa: BLE001 - whatever Pillow cannot read holds no keywords for this purpose
        return dict(_NONE)
    found, ramtags = _xmp_keywords(packet.encode("utf-8") if isinstance(packet, str) else packet)
    if not found[FLAT] and iptc:
        found[FLAT] = [k for k in _iptc_keywords(iptc) if k not in ramtags.get("AddedKeywords", ())]
    if found[HIERARCHICAL]:  # a flat keyword that no path names is a top-level one (Lightroom's layout)
        named = {part for path in found[HIERARCHICAL] for part in path.split("|")}
        found[HIERARCHICAL] += [keyword for keyword in found[FLAT] if keyword not in named]
    return found


def _xmp_keywords(packet: bytes | None) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """Each keyword field of an XMP packet less ramtag's additions, and those additions by record."""
    if not packet:
        return dict(_NONE), {}
    try:
        descriptions = _descriptions(packet.strip(b"\x00 \t\r\n"))[1]
    except SidecarError:
        return dict(_NONE), {}
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
