"""Keywords embedded in the photos themselves (``ramtag run --embed``), through ExifTool.

Lightroom Classic reads and writes the XMP inside JPEG, TIFF, PSD and DNG files and uses ``.xmp``
sidecars only for proprietary raws; Immich, PhotoPrism and Windows read the keywords in the file
too. So ``--embed`` writes the keyword fields of the sidecars (``dc:subject``,
``lr:hierarchicalSubject``, ``digiKam:TagsList``, and ``IPTC:Keywords`` in JPEG and TIFF) into the
file, after the person's own keywords, with ramtag's record of what it added (its XMP namespace) so
that a re-run replaces only its own entries and ``ramtag xmp clean`` takes them out again.

Readers follow the Metadata Working Group's rule for a file with both IPTC and XMP: once XMP has
``dc:subject`` they read the keywords there, unless the Photoshop block's ``IPTCDigest`` says a program
changed the IPTC since. So the person's keywords held in IPTC alone (an older file without XMP
keywords) are copied into the XMP fields ramtag starts, and a digest that was current before a write
is brought up to date after it: the file reads as one list of keywords, the person's and ramtag's. A
digest that was already out of date is left so, for the readers to reconcile as before.

A photo is never damaged (``rewriting``): the edit is made on a copy beside it, the copy must decode
to the very same pixels, it is synced and takes the original's mode, owner and modification time,
and only then is it renamed over the original. A kill at any moment leaves the original or the new
file, and at worst a hidden ``.NAME.ramtag-tmp.EXT`` copy, removed by the next --embed run (walks never take it for a photo). Proprietary raws
are never written to (they get sidecars); nor is a read-only file.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine.job import EMBED_NEEDS_FILES
from ..errors import UsageError
from ..exiftool import ExifTool, ExifToolError
from .base import PerImageOutput
from .rewriting import CURRENT_DIGEST, EmbedError, digests, read_only, read_only_refusal, remove_stale, rewrite
from .copies import added_keywords, adopt_copies
from .xmp import _utc_now, _wanted

if TYPE_CHECKING:
    from ..inputs import ImageRef
    from ..tagger import TagResult
    from .sidecars import Provenance

EMBEDDABLE = frozenset({".jpg", ".jpeg", ".jpe", ".tif", ".tiff", ".png", ".webp", ".heic", ".heif", ".avif", ".dng"})
_IPTC = frozenset({".jpg", ".jpeg", ".jpe", ".tif", ".tiff"})  # formats whose IPTC photo software reads
# (field exiftool writes, ramtag's record of what it added there)
FIELDS = (
    ("XMP-dc:Subject", "AddedSubject"),
    ("XMP-lr:HierarchicalSubject", "AddedHierarchicalSubject"),
    ("XMP-digiKam:TagsList", "AddedTagsList"),
    ("IPTC:Keywords", "AddedKeywords"),
)
_TOOLKIT = "XMP-x:XMPToolkit"
_NONE = "-"  # PreviousToolkit when the file had none
# Tags exiftool adds to an IPTC record or Photoshop block it creates: not the person's.
_IPTC_VERSIONS = ("IPTC:ApplicationRecordVersion", "IPTC:EnvelopeRecordVersion")  # exiftool adds them
_IPTC_OWN = {"IPTC:Keywords", "IPTC:CodedCharacterSet", *_IPTC_VERSIONS}
_PHOTOSHOP_OWN = {"Photoshop:IPTCDigest"}


def can_embed(path: Path) -> bool:
    """Whether ``--embed`` writes into this file (by extension): not proprietary raws, GIF, BMP."""
    return path.suffix.lower() in EMBEDDABLE


@dataclass(frozen=True)
class Held:
    """What a file holds now: keyword fields, ramtag's record, and which metadata blocks exist."""

    values: dict[str, list[str]]
    record: dict[str, Any] | None
    tags: frozenset[str]  # every XMP, IPTC and Photoshop tag name there (exiftool's -G1 names)
    toolkit: str  # the XMP toolkit named in the file ("" if none)
    iptc_utf8: bool = False  # the IPTC block declares UTF-8 (CodedCharacterSet)
    digest_current: bool = False  # the Photoshop block's IPTCDigest matches the IPTC as it is

    def has(self, group: str) -> bool:
        prefix = "XMP-" if group == "XMP" else f"{group}:"
        return any(tag.startswith(prefix) for tag in self.tags)

    def created(self) -> list[str]:
        """What ramtag's writes create: the metadata blocks missing now, before its first write,
        and the IPTC record versions exiftool adds to an IPTC block that lacks them."""
        if self.record is None:
            groups = [group for group in ("XMP", "IPTC", "Photoshop") if not self.has(group)]
            return groups + [tag for tag in _IPTC_VERSIONS if "IPTC" not in groups and tag not in self.tags]
        return _as_list(self.record.get("XMP-ramtag:Created"))

    def previous_toolkit(self) -> str:
        """The XMP toolkit the file named before ramtag first wrote to it (``_NONE``: none)."""
        if self.record is None:
            return self.toolkit or _NONE
        return str(self.record.get("XMP-ramtag:PreviousToolkit") or _NONE)

    def added(self) -> dict[str, list[str]]:
        record = self.record or {}
        return {name: _as_list(record.get(f"XMP-ramtag:{name}")) for _, name in FIELDS}

    def person(self) -> dict[str, list[str]]:
        """Each field without what ramtag added there.

        ramtag's copies of the person's IPTC keywords in ``dc:subject`` (``tagging_args``) are the
        person's once their software has written ``dc:subject`` beside them: readers take the
        keywords from there, so the copies stay through re-runs and ``clean``."""
        added = self.added()
        own = {name: [v for v in self.values[tag] if v not in set(added[name])] for tag, name in FIELDS}
        if own["AddedSubject"]:
            ramtags = set(added["AddedSubject"]) - set(self.iptc_text(own["AddedKeywords"]))
            own["AddedSubject"] = [v for v in self.values["XMP-dc:Subject"] if v not in ramtags]
        return adopt_copies(own, {name: self.values[tag] for tag, name in FIELDS})  # and the fields' copies

    def iptc_text(self, keywords: list[str]) -> list[str]:
        """IPTC keywords as meant: where no UTF-8 is declared exiftool reads them as Latin-1, and
        those that are UTF-8 all the same (as many programs write them) are decoded as such."""
        return keywords if self.iptc_utf8 else [_utf8_read_as_latin(k) for k in keywords]


def _utf8_read_as_latin(text: str) -> str:
    if text.isascii():
        return text
    raw = bytearray()
    for char in text:
        try:
            raw += char.encode("cp1252")  # exiftool's Latin is Windows-1252
        except UnicodeEncodeError:
            if ord(char) > 0xFF:
                return text  # no single-byte text at all
            raw.append(ord(char))  # the bytes cp1252 leaves undefined
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return text  # Latin-1 text indeed


def _as_list(value: Any) -> list[str]:
    """A tag's values as text; empty entries dropped (``-TAG=`` would clear the whole list)."""
    if value is None or value == "":
        return []
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values if str(v) != ""]


def read_held(tool: ExifTool, path: Path) -> Held:
    try:
        found = tool.read(path, "-XMP:all", "-IPTC:all", "-Photoshop:all", f"-{CURRENT_DIGEST}")
    except ExifToolError as error:
        raise EmbedError(f"exiftool cannot read its metadata ({error})") from None
    stored, current = digests(found)
    found.pop(CURRENT_DIGEST, None)
    digest_current = bool(stored) and stored == current
    values = {tag: _as_list(found.get(tag)) for tag, _ in FIELDS}
    record = {key: value for key, value in found.items() if key.startswith("XMP-ramtag:")} or None
    utf8 = str(found.get("IPTC:CodedCharacterSet", "")).upper().replace("-", "") == "UTF8"
    if utf8 and any("?" in keyword for keyword in values["IPTC:Keywords"]):
        values["IPTC:Keywords"] = _raw_keywords(tool, path, values["IPTC:Keywords"])
    return Held(values, record, frozenset(found), str(found.get(_TOOLKIT) or ""), utf8, digest_current)


def _raw_keywords(tool: ExifTool, path: Path, read: list[str]) -> list[str]:
    """IPTC keywords declared UTF-8 that are not (Latin-1 from an older program): exiftool reads
    each invalid byte as ``?``; their bytes, as the Latin-1 they are. Only ever read: the person's
    keywords are never written back (``_edit``), so their bytes stay as they were."""
    try:
        raw = _as_list(tool.read(path, "-b", "-IPTC:Keywords").get("IPTC:Keywords"))
    except ExifToolError:
        return read
    if len(raw) != len(read):
        return read
    decoded = []
    for value in raw:
        if value.startswith("base64:"):
            data = base64.b64decode(value[len("base64:"):])
            try:
                value = data.decode("utf-8")
            except UnicodeDecodeError:  # exiftool's Latin is cp1252; its five undefined bytes as Latin-1
                value = "".join(bytes([byte]).decode("cp1252", errors="ignore") or chr(byte) for byte in data)
        decoded.append(value)
    return decoded


def _settings_of(held: Held) -> str | None:
    return str(held.record.get("XMP-ramtag:Settings")) if held.record else None


def _assign(tag: str, values: Sequence[str]) -> list[str]:
    return [f"-{tag}={value}" for value in values] if values else [f"-{tag}="]


def _edit(tag: str, now: Sequence[str], wanted: Sequence[str], person: Sequence[str]) -> list[str]:
    """``tag``'s list from ``now`` to ``wanted`` (the ``person``'s values, then ramtag's). IPTC
    keywords are edited in place, ramtag's taken out and added one by one, for the person's to keep
    their bytes (exiftool would write the whole list anew in the declared character set); XMP
    lists are assigned whole."""
    if not tag.startswith("IPTC:"):
        return _assign(tag, wanted)
    mine = [value for value in now if value not in person]
    return ([f"-{tag}-={value}" for value in dict.fromkeys(mine) if value not in wanted]
            + [f"-{tag}+={value}" for value in wanted if value not in person and value not in mine])


def _toolkit(previous: str) -> list[str]:
    # exiftool stamps its own name on any XMP it writes; the file keeps the toolkit it had.
    return [f"-{_TOOLKIT}={previous}"] if previous and previous != _NONE else [f"-{_TOOLKIT}="]


def tagging_args(held: Held, provenance: Provenance, result: TagResult, suffix: str, now: str) -> list[str]:
    """exiftool's arguments that put these tags in, after the person's keywords."""
    person = held.person()
    wanted = _wanted(provenance, result)
    iptc = suffix in _IPTC
    created, previous = held.created(), held.previous_toolkit()
    if iptc:
        # UTF-8 where declared, or where ramtag made the block and may declare it: not over the
        # person's own non-ASCII keywords, which their program wrote in its character set.
        utf8 = held.iptc_utf8 or ("IPTC" in created and all(k.isascii() for k in person["AddedKeywords"]))
        # Without UTF-8 declared, IPTC is Latin-1 to its readers: other names stay in XMP only.
        # IPTC keywords hold 64 bytes: a longer name stays in XMP rather than being cut.
        wanted["AddedKeywords"] = [
            n for n in wanted["AddedSubject"] if (utf8 or n.isascii()) and len(n.encode("utf-8")) <= 64
        ]
    else:
        wanted["AddedKeywords"] = []
    # Keywords the person has in IPTC alone: once ramtag starts dc:subject, readers would look there only.
    only_iptc = held.iptc_text(person["AddedKeywords"]) if not person["AddedSubject"] else []
    added = added_keywords(wanted, person, elsewhere={"AddedSubject": only_iptc})
    args = []
    for tag, name in FIELDS:
        if tag.startswith("IPTC:") and not iptc:
            continue
        args += _edit(tag, held.values[tag], person[name] + added[name], person[name])
        args += _assign(f"XMP-ramtag:{name}", added[name])
    if iptc and added["AddedKeywords"] and "IPTC" in created and any(not n.isascii() for n in added["AddedKeywords"]):
        args.append("-IPTC:CodedCharacterSet=UTF8")
    for name, value in (("Settings", provenance.settings), ("Model", provenance.model),
                        ("Checkpoint", provenance.checkpoint_sha256), ("Thresholds", provenance.thresholds),
                        ("Date", now), ("PreviousToolkit", previous)):
        args.append(f"-XMP-ramtag:{name}={value}")
    args += _assign("XMP-ramtag:Created", created)
    return args + _toolkit(previous)


def cleaning_args(held: Held) -> list[str]:
    """exiftool's arguments that take ramtag's entries out; blocks it created go when emptied."""
    person = held.person()
    args = []
    for tag, name in FIELDS:
        if held.values[tag] != person[name]:
            args += _edit(tag, held.values[tag], person[name], person[name])
    args.append("-XMP-ramtag:all=")
    created = set(held.created())
    args += _toolkit(held.previous_toolkit())
    mine = {tag for tag, _ in FIELDS} | {_TOOLKIT}
    left = {tag for tag in held.tags if not tag.startswith("XMP-ramtag:")}
    if "XMP" in created and not any(t.startswith("XMP-") and (t not in mine or _kept(t, person)) for t in left):
        args.append("-XMP:all=")
    if "IPTC" in created and not any(t.startswith("IPTC:") and (t not in _IPTC_OWN or _kept(t, person)) for t in left):
        args.append("-IPTC:all=")
        if "Photoshop" in created and not any(t.startswith("Photoshop:") and t not in _PHOTOSHOP_OWN for t in left):
            args.append("-Photoshop:all=")
    else:  # the person's IPTC block stays: only what exiftool added to it for ramtag goes
        args += [f"-{tag}=" for tag in _IPTC_VERSIONS if tag in created]
    return args


def _kept(tag: str, person: dict[str, list[str]]) -> bool:
    names = dict(FIELDS)
    return tag in names and bool(person[names[tag]])


class EmbedWriter(PerImageOutput):
    """One run's results written into the photos: the ``Output`` of ``ramtag run --embed``."""

    def __init__(
        self, provenance: Provenance, *, touch: bool = False, now: Callable[[], str] = _utc_now,
        tool: ExifTool | None = None, beside_sidecars: bool = False,
    ) -> None:
        self.provenance = provenance
        self.touch = touch  # give edited photos the current modification time
        # --xmp too: a read-only photo's keywords are in its sidecar, which is no error of the photo's
        self.beside_sidecars = beside_sidecars
        self.now = now
        self.tool = tool or ExifTool()
        self.written = 0  # photos this run wrote keywords into
        self.read_only = 0  # photos it left alone, being read-only (an output may have tagged them still)
        self.refused: list[str] = []  # with --xmp, photos exiftool could not write into: why (their sidecars hold the keywords)

    def handles(self, path: Path) -> bool:
        return can_embed(path)

    def needs(self, ref: ImageRef) -> bool:
        if getattr(ref, "source", None) is not None:
            raise UsageError(f"{ref.key}: {EMBED_NEEDS_FILES}")
        if not self.handles(ref.path):
            return False
        try:
            if _settings_of(read_held(self.tool, ref.path)) == self.provenance.settings:
                return False
        except EmbedError:
            return True  # tagged, and the error reported then
        if read_only(ref.path):  # not tagged only to be refused: counted, and said at the end
            self.read_only += 1
            return False
        return True

    def counts(self, ref: ImageRef) -> bool:
        return self.handles(ref.path)

    failure = EmbedError
    restamps = True  # --out records the photo as it is once its keywords are in

    def failed(self, path: Path, error: Exception) -> str:
        return f"--embed: {error}"

    def update(self, path: Path, result: TagResult, stamp: object = None) -> bool:
        """Write the tags into ``path``; False when it holds them from these settings already.
        With --xmp, a photo exiftool cannot write is said at the end, not an error row: its
        sidecar, written next, holds the keywords (and its row its tags), as for a read-only photo."""
        if self.beside_sidecars and read_only(path):
            return False  # counted by ``needs``; its sidecar holds the keywords
        try:
            return self._update(path, result)
        except EmbedError as error:
            if not self.beside_sidecars:
                raise
            self.refused.append(f"{path}: {error}")
            return False

    def _update(self, path: Path, result: TagResult) -> bool:
        remove_stale(path)
        held = read_held(self.tool, path)
        if _settings_of(held) == self.provenance.settings:
            return False
        args = tagging_args(held, self.provenance, result, path.suffix.lower(), self.now())
        digest = held.digest_current and path.suffix.lower() in _IPTC
        rewrite(self.tool, path, args, touch=self.touch, refresh_digest=digest)
        self.written += 1
        return True

    def close(self) -> None:
        self.tool.close()


def clean_embedded(tool: ExifTool, path: Path, *, dry_run: bool = False) -> str:
    """Take ramtag's entries out of one photo: ``"cleaned"`` or ``"untouched"`` (none there)."""
    remove_stale(path)
    held = read_held(tool, path)
    if held.record is None:
        return "untouched"
    if dry_run:
        if read_only(path):  # what the real clean would say
            raise read_only_refusal(tagging=False)
        return "cleaned"
    rewrite(tool, path, cleaning_args(held), touch=False, refresh_digest=held.digest_current, tagging=False)
    return "cleaned"


def holds_ramtag_record(path: Path) -> bool:
    """Whether ``run --embed`` wrote into a photo (its XMP holds ramtag's namespace): found in its
    metadata's bytes, without ExifTool (``xmpscan``)."""
    from .xmp import RAMTAG
    from .xmpscan import holds_record

    return holds_record(path, RAMTAG.encode())


def find_embeddable(paths: Sequence[Path], *, hidden: bool = False) -> Iterator[Path]:
    """Files ``--embed`` writes into, under folders (sorted, recursively) and named directly."""
    for root in paths:
        if not root.is_dir():
            if can_embed(root):
                yield root
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if hidden or not d.startswith("."))
            for name in sorted(files):
                if can_embed(Path(name)) and (hidden or not name.startswith(".")):
                    yield Path(folder) / name
