"""Images that share a name stem in one folder (``IMG_1.CR2`` beside ``IMG_1.JPG``): who owns
``IMG_1.xmp``.

Cameras set to RAW+JPEG write both files of one shot; exports and conversions add more
(``IMG_1.dng``, ``IMG_1.tif``). Lightroom calls the raw of such a pair its master and keeps the
pair's metadata in ``IMG_1.xmp``, so two images must never write that one sidecar. The owner of a
stem is its proprietary raw, else its DNG, else the first by name; the other images of the stem
keep their sidecar beside their full name (``IMG_1.JPG.xmp``), whatever the naming asked for.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

from ..inputs.raw import is_proprietary_raw
from ..inputs.refs import is_image_name, is_raw_name

_FOLDERS_KEPT = 4  # runs go folder by folder: a few listings cover the folders in hand


class Siblings:
    """Which images of a folder share a stem, from one listing per folder (a few kept)."""

    def __init__(self) -> None:
        self._stems: OrderedDict[str, dict[str, list[str]]] = OrderedDict()

    def of(self, image: Path) -> list[str]:
        """The names of the other image files beside ``image`` with its stem (``IMG_1``)."""
        stems = self._listing(os.fspath(image.parent))
        return [name for name in stems.get(_stem(image.name), []) if name != image.name]

    def owner(self, image: Path) -> str | None:
        """The name of the image that owns the stem's ``replace`` sidecar, when ``image`` has
        siblings; ``None`` when it is alone."""
        others = self.of(image)
        if not others:
            return None
        return min([image.name, *others], key=_claim)

    def owner_of_stem(self, folder: Path, stem: str) -> str | None:
        """The name of the image that owns ``folder/stem.xmp``; ``None`` when no image has that stem."""
        names = self._listing(os.fspath(folder)).get(stem, [])
        return min(names, key=_claim) if names else None

    def _listing(self, folder: str) -> dict[str, list[str]]:
        if folder in self._stems:
            self._stems.move_to_end(folder)
            return self._stems[folder]
        stems: dict[str, list[str]] = {}
        try:
            with os.scandir(folder or ".") as entries:
                for entry in entries:
                    if is_image_name(entry.name):
                        stems.setdefault(_stem(entry.name), []).append(entry.name)
        except OSError:
            pass  # an unreadable folder: its images fail on their own
        self._stems[folder] = stems
        if len(self._stems) > _FOLDERS_KEPT:
            self._stems.popitem(last=False)
        return stems


def _stem(name: str) -> str:
    return os.path.splitext(name)[0]


def _claim(name: str) -> tuple[bool, bool, str]:
    return (not is_proprietary_raw(name), not is_raw_name(name), name)
