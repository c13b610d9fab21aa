"""XMP sidecars as an output: where each image's sidecar is, what a run writes there, and clean-up.

``xmp`` edits a sidecar's bytes; this module decides which file that is (``IMG_1.CR2.xmp`` or
``IMG_1.xmp``), whether it already holds this run's tags (a re-run skips the image), writes it
atomically, and takes ramtag's entries out again (``ramtag xmp clean``). ``SidecarWriter`` is the
``Output`` a run hands its records to: a sidecar that cannot be written makes its image an error row.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import atomic
from ..engine.job import NAMINGS, RESULT_SETTINGS, SIDECARS_NEED_FILES
from ..errors import UsageError
from ..text import json_text
from ..inputs.refs import is_image_name, is_raw_name
from .base import PerImageOutput
from .inside import joined, keywords_in, photo_keywords
from .pairs import Siblings
from .rewriting import read_only
from .xmp import MAX_SIDECAR_BYTES, SidecarError, _descriptions, _read_state, _utc_now, merge

if TYPE_CHECKING:
    from ..inputs import ImageRef
    from ..inputs.identity import Stamp
    from ..tagger import TagResult


@dataclass(frozen=True)
class Provenance:
    """What every sidecar of one run records beside its tags; ``settings`` decides what is current."""

    model: str
    checkpoint_sha256: str
    thresholds: str
    settings: str
    parent: str = "ramtag"
    lang: str = "en"

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], *, parent: str, lang: str) -> Provenance:
        """From ``Tagger.metadata()`` plus ``top_k``: what the keywords depend on, hashed."""
        chosen = {key: metadata.get(key) for key in (*RESULT_SETTINGS, "open_set")
                  if key != "bf16_recipe" or metadata.get(key)}  # recorded later: older hashes hold
        chosen["xmp"] = {"parent": parent, "lang": lang}
        values = metadata.get("thresholds") or []
        same = len(set(values)) == 1
        return cls(
            model=str(metadata.get("model_kind") or ""),
            checkpoint_sha256=str(metadata.get("checkpoint_sha256") or ""),
            thresholds=f"{values[0]:g}" if same else f"per tag, sha256 {_sha256(values)[:16]}",
            settings=_sha256(chosen),
            parent=parent,
            lang=lang,
        )


def _sha256(value: Any) -> str:
    return hashlib.sha256(json_text(value, sort_keys=True).encode("utf-8")).hexdigest()


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def image_text(stamp: Stamp | None) -> str:
    """What a sidecar says of its image's version: ``12345 bytes, modified 2026-01-02T03:04:05.678901Z``."""
    if stamp is None or stamp.size is None or stamp.mtime_us is None:
        return ""
    when = (_EPOCH + timedelta(microseconds=stamp.mtime_us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp.size} bytes, modified {when}"


def sidecar_path(image: Path, naming: str = "auto") -> Path:
    """``ext``: IMG_0001.CR2.xmp (darktable, digiKam, Immich); ``replace``: IMG_0001.xmp (Lightroom).

    ``auto``: whichever exists, ``ext`` if both, else ``ext``. An existing ``.XMP`` spelling is
    used rather than a second sidecar made beside it.
    """
    if naming not in NAMINGS:
        raise ValueError(f"naming must be one of {NAMINGS}, not {naming!r}")
    forms = {"ext": image.with_name(image.name + ".xmp"), "replace": image.with_suffix(".xmp")}
    order = ["ext", "replace"] if naming == "auto" else [naming]
    for form in order:
        for candidate in (forms[form], forms[form].with_suffix(".XMP")):
            if candidate.is_file():
                return candidate
    return forms[order[0]]


def read_sidecar(path: Path) -> bytes | None:
    """The sidecar's bytes, or None when there is none yet."""
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            raise SidecarError(f"larger than {MAX_SIDECAR_BYTES >> 20} MiB; not a sidecar ramtag edits")
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SidecarError(f"cannot read it ({exc.strerror or exc})") from None


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old sidecar or the new one; an existing one keeps its permissions, and one
    made read-only is never replaced. A sidecar that is a symbolic link stays one: the file it
    points to is the one replaced (as for photos under --embed)."""
    _check_writable(path)
    if path.is_symlink() and path.exists():
        path = Path(os.path.realpath(path))
    try:
        atomic.write_atomically(path, data)
    except OSError as exc:
        raise SidecarError(f"cannot write it ({exc.strerror or exc})") from None


def _check_writable(path: Path) -> None:
    """A sidecar its owner made read-only (chmod a-w) stays as it is: renaming a new one over it
    would work in a writable folder, and undo what the read-only mode asked."""
    if path.exists() and read_only(path):
        raise SidecarError("the sidecar is read-only: ramtag does not change it (make it writable with chmod u+w)")


class SidecarWriter(PerImageOutput):
    """One run's results into each image's sidecar: the ``Output`` of ``ramtag run --xmp``.

    An image needs tagging when its sidecar does not hold ramtag's tags from these settings yet.
    """

    # dest stays None: the sidecars are beside the images, no one place to name in a summary

    def __init__(
        self,
        provenance: Provenance,
        *,
        naming: str = "auto",
        now: Callable[[], str] = _utc_now,
        warn: Callable[[Path, str], None] | None = None,
        only: Callable[[Path], bool] | None = None,
    ) -> None:
        if naming not in NAMINGS:
            raise ValueError(f"naming must be one of {NAMINGS}, not {naming!r}")
        self.provenance = provenance
        self.naming = naming
        self.now = now
        self.started = time.time()
        self.siblings = Siblings()
        self.warn = warn
        self.only = only  # the images it writes sidecars for (None: all)
        self.written = 0  # sidecars this run wrote
        self.others_written = 0  # sidecars of the other naming it kept up to date (``other_for``)
        self.warned_pairs = False  # the RAW+JPEG warning is one line per run
        self._warning = threading.Lock()

    @classmethod
    def for_run(
        cls, metadata: dict[str, Any], *, parent: str, lang: str, naming: str,
        warn: Callable[[Path, str], None] | None = None, only: Callable[[Path], bool] | None = None,
    ) -> SidecarWriter:
        """The sidecar output of a run whose rows carry ``metadata`` (the output schema's)."""
        provenance = Provenance.from_metadata(metadata, parent=parent, lang=lang)
        return cls(provenance, naming=naming, warn=warn, only=only)

    def handles(self, image: Path) -> bool:
        return self.only is None or self.only(image)

    def path_for(self, image: Path) -> Path:
        """The image's sidecar: as ``naming`` says, except that an image sharing its stem with
        another (``IMG_1.JPG`` beside ``IMG_1.CR2``) and not owning it uses ``IMG_1.JPG.xmp``."""
        wanted = sidecar_path(image, self.naming)
        if wanted.name == image.name + wanted.suffix:  # IMG_1.JPG.xmp: its own, whoever else is there
            return wanted
        owner = self._owner(image)
        if owner is None or owner == image.name:
            return wanted
        path = sidecar_path(image, "ext")
        with self._warning:  # the progress count asks from another thread: one line all the same
            first, self.warned_pairs = not self.warned_pairs, True
        if first and self.warn is not None:
            shared = image.with_suffix(".xmp").name
            why = "the master of a RAW+JPEG pair, to Lightroom" if is_raw_name(owner) else "the first of them by name"
            self.warn(image, f"shares its name with {owner}, which owns {shared} ({why}): its sidecar is "
                             f"{path.name}, and so for every image sharing a name")
        return path

    def _owner(self, image: Path) -> str | None:
        """Who owns the stem's ``IMG_1.xmp`` when other images share it (``pairs``); None: no one else."""
        bare = image.with_suffix("")  # IMG_1.CR2 beside IMG_1.CR2.jpg: IMG_1.CR2.xmp is that raw's own
        return bare.name if is_image_name(bare.name) and bare.is_file() else self.siblings.owner(image)

    def other_for(self, image: Path, path: Path) -> Path | None:
        """The image's sidecar of the other naming, when an earlier run (another ``--xmp-naming``)
        left ramtag's entries there: it is kept up to date too, so no application reads old tags
        from it. Never created; never a sidecar another image of the stem owns."""
        others = other_sidecars(image, path, self._owner(image))
        return next((candidate for candidate in others if holds_ramtag(candidate)), None)

    def is_current(self, image: Path, stamp: Stamp | None = None) -> bool:
        """Whether the sidecar holds ramtag's entries from these settings, for this version of the
        image (``stamp``; a sidecar of an earlier version that does not say counts as current), and
        so does the one of the other naming that ``other_for`` keeps up to date, if there is one."""
        path = self.path_for(image)
        if not self._current_at(path, stamp):
            return False
        other = self.other_for(image, path)
        return other is None or self._current_at(other, stamp)

    def _current_at(self, path: Path, stamp: Stamp | None) -> bool:
        try:
            data = read_sidecar(path)
            state = _read_state(_descriptions(data)[1])[0] if data is not None else None
        except SidecarError:
            return False  # tagged again, and the error reported then
        if state is None or state["Settings"] != self.provenance.settings:
            return False
        return not state["Image"] or stamp is None or state["Image"] == image_text(stamp)

    def needs(self, ref: ImageRef) -> bool:
        if getattr(ref, "source", None) is not None:  # a tar member or a URL has nowhere to put one
            raise UsageError(f"{ref.key}: {SIDECARS_NEED_FILES}")
        return self.handles(ref.path) and not self.is_current(ref.path, getattr(ref, "stamp", None))

    def counts(self, ref: ImageRef) -> bool:
        """For a total counted beside the run: still to do, or written by this run already."""
        if not self.handles(ref.path):
            return False
        if self.needs(ref):
            return True
        try:
            return self.path_for(ref.path).stat().st_mtime >= self.started
        except OSError:
            return False

    def update(self, image: Path, result: TagResult, stamp: Stamp | None = None) -> Path:
        """Merge ``result`` into the image's sidecar (and into ``other_for``'s, first, so that a
        failure there leaves the image to tag again); the image itself is never opened."""
        path = self.path_for(image)
        if path.resolve() == image.resolve():
            raise SidecarError("the sidecar would be the image itself")
        other = self.other_for(image, path)
        photo, owner = functools.cache(lambda: photo_keywords(image)), self._owner(image)  # read once, if needed

        def beside(target: Path) -> Callable[[], dict[str, list[str]]]:  # each sidecar: the keywords outside it
            return functools.cache(lambda: keywords_beside(image, target, owner, photo))

        if other is not None:
            try:
                self.others_written += self._merge_into(other, result, stamp, beside(other))
            except SidecarError as error:
                raise SidecarError(f"{other.name}, which holds its tags from an earlier run: {error}") from None
        self.written += self._merge_into(path, result, stamp, beside(path))
        return path

    def _merge_into(self, path: Path, result: TagResult, stamp: Stamp | None, inside: Callable) -> bool:
        data = read_sidecar(path)
        merged = merge(data, self.provenance, result, now=self.now, image=image_text(stamp), inside=inside)
        if merged is None or merged is data:
            return False
        write_atomically(path, merged)
        return True

    failure = SidecarError

    def failed(self, path: Path, error: Exception) -> str:
        return f"sidecar {self.path_for(path).name}: {error}"

    write = PerImageOutput.write_records  # each sidecar's record: the error of one that cannot be written


def holds_ramtag(path: Path) -> bool:
    """Whether the sidecar at ``path`` holds entries of ramtag's (one it may be asked to clean)."""
    try:
        data = read_sidecar(path)
        return data is not None and _read_state(_descriptions(data)[1])[0] is not None
    except SidecarError:
        return False


def clean(path: Path, *, dry_run: bool = False) -> str:
    """Take ramtag's entries out of one sidecar: ``"cleaned"``, ``"removed"`` (nothing else was in
    it, so the file goes) or ``"untouched"`` (nothing of ramtag's in it)."""
    data = read_sidecar(path)
    if data is None:
        raise SidecarError("not found")
    merged = merge(data, None)  # the copies the person's software wrote back stay: ramtag recorded its own
    if merged is data:
        return "untouched"
    _check_writable(path)  # a dry run says so too
    if not dry_run and merged is None:
        try:
            path.unlink()
        except OSError as exc:
            raise SidecarError(f"cannot remove it ({exc.strerror or exc})") from None
    elif not dry_run:
        write_atomically(path, merged)
    return "removed" if merged is None else "cleaned"


def other_sidecars(image: Path, target: Path, owner: str | None) -> Iterator[Path]:
    """The image's sidecars other than ``target``: of the other naming, never another image's
    (``owner``: the name of the image that owns the stem's ``IMG_1.xmp``, None when it is alone)."""
    forms = [image.with_name(image.name + ".xmp")]
    if owner is None or owner == image.name:
        forms.append(image.with_suffix(".xmp"))
    for form in forms:
        for candidate in (form, form.with_suffix(".XMP")):
            if candidate.name.lower() != target.name.lower() and candidate.is_file():
                yield candidate


def keywords_beside(
    image: Path, target: Path, owner: str | None, photo: Callable[[], dict[str, list[str]]] | None = None
) -> dict[str, list[str]]:
    """The person's keywords that the sidecar ``target`` must not hide: inside the photo, and in
    its sidecar of the other naming (Lightroom's ``IMG_1.xmp`` beside a new ``IMG_1.JPG.xmp``)."""
    found = [photo() if photo is not None else photo_keywords(image)]
    for other in other_sidecars(image, target, owner):
        try:
            found.insert(0, keywords_in(read_sidecar(other))[0])
        except SidecarError:
            continue  # broken: said when ramtag is asked to write it, never guessed from
    return joined(*found)


def _distinct(paths: Iterable[Path]) -> Iterator[Path]:
    seen: set[tuple[int, int]] = set()
    for path in paths:
        info = path.stat()
        if (info.st_dev, info.st_ino) not in seen:
            seen.add((info.st_dev, info.st_ino))
            yield path


_CLEANED = Siblings()  # the folders of the images ``clean`` is given, a few listings at a time


def find_sidecars(paths: Iterable[Path], *, hidden: bool = False) -> Iterator[Path]:
    """``.xmp`` files under folders (sorted, recursively), those named directly, and the sidecars
    of an image named directly (which is itself for the embedded keywords: ``embedded``)."""
    for root in paths:
        if not root.is_dir():
            if root.suffix.lower() == ".xmp" or not is_image_name(root.name):
                yield root
            else:  # one file, however many spellings find it (IMG_1.JPG.xmp and .XMP on a Mac's disk)
                owner = _CLEANED.owner_of_stem(root.parent, root.stem)
                yield from _distinct(p for p in other_sidecars(root, root, owner) if holds_ramtag(p))
            continue
        for folder, subfolders, files in os.walk(root):
            subfolders[:] = sorted(d for d in subfolders if hidden or not d.startswith("."))
            for name in sorted(files):
                if name.lower().endswith(".xmp") and (hidden or not name.startswith(".")):
                    yield Path(folder) / name
