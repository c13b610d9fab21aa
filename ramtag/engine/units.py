"""The work of a run cut into units, each tagged and committed whole, and what a re-run skips.

A tar shard is one unit: it is read in one sequential pass, and its name is its identity, so a
committed shard is skipped without being opened, unless its version changed since
(``inputs.versions.shard_version``: a local shard's size and modification time, a remote one's size
and ETag or modification time, asked of its store when planning): then it is tagged again, and its
part replaced. Image files (folders, files named directly, lists,
URLs) are cut into chunks of ``images_per_unit`` in discovery order, after leaving out the keys
already committed: adding images to a folder tags only those, and nothing is tagged twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..inputs import MAX_PIXELS, ImageRef, Item, select
from ..inputs.remote import ref_from_data, ref_to_data
from ..inputs.shards import ShardReadError, TarShard, Unusable, name_clash, shard_members
from ..inputs.versions import shard_version
from ..text import json_text


@dataclass(frozen=True)
class WorkUnit:
    """A tar shard, or image files: the same ``ImageRef`` values a local run tags."""

    shard: TarShard | None = None
    images: tuple[ImageRef, ...] = ()
    version: str | None = field(default=None, compare=False)  # the shard's version when planned

    @property
    def name(self) -> str | None:
        """The shard's name (what it is committed under), ``None`` for image files."""
        return self.shard.name if self.shard is not None else None

    def refs(
        self,
        *,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
        hidden: bool = False,
        max_pixels: int | None = MAX_PIXELS,
    ) -> Iterator[ImageRef]:
        """The images to tag, as a local run would find them; a shard is read here, member by
        member (``ShardReadError`` when it cannot be read at all)."""
        if self.shard is not None:
            members = _whole(self.shard, shard_members(self.shard, hidden=hidden, max_pixels=max_pixels))
            return select(members, include, exclude)
        return iter(self.images)

    def to_json(self) -> str:
        shard = None if self.shard is None else [
            self.shard.location if self.shard.remote else os.path.abspath(self.shard.location),  # (see ref_to_data)
            self.shard.name, self.shard.remote,
        ]
        return json_text({"shard": shard, "images": [ref_to_data(ref) for ref in self.images]})

    @classmethod
    def from_json(cls, text: str) -> WorkUnit:
        data: dict[str, Any] = json.loads(text)
        shard = TarShard(*data["shard"]) if data["shard"] is not None else None
        return cls(shard, tuple(ref_from_data(entry) for entry in data["images"]))


@dataclass(frozen=True)
class Plan:
    """The units still to tag, and how much a previous run already did."""

    units: list[WorkUnit]
    skipped_shards: int
    skipped_images: int
    changed_shards: int = 0  # committed before, changed since: tagged again
    unseen_shards: tuple[str, ...] = ()  # committed before, not among this run's inputs (deleted?)

    @property
    def images(self) -> int:
        """Image files in the plan (a shard's members are only known once it is read)."""
        return sum(len(unit.images) for unit in self.units)

    @property
    def shards(self) -> int:
        return sum(unit.shard is not None for unit in self.units)


def plan_units(
    items: Iterable[Item],
    *,
    done_shards: Mapping[str, Any] = MappingProxyType({}),
    done_keys: Container[str] = frozenset(),
    images_per_unit: int = 1000,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Plan:
    """Shards in the order found, then the image files in chunks; committed work left out.

    ``done_shards``: committed shards by name, each with the ``version`` it was tagged at. Two
    shards with the same file name would give the same keys, so they are refused. Remote shards'
    versions are asked for a few at a time (one request each).
    """
    if images_per_unit < 1:
        raise ValueError("images_per_unit must be at least 1")
    units: list[WorkUnit] = []
    shards: dict[str, str] = {}
    chunk: list[ImageRef] = []
    skipped_shards = skipped_images = changed = 0
    items = list(items)
    versions = _versions([item for item in items if isinstance(item, TarShard)])
    for item in items:
        if isinstance(item, TarShard):
            if item.name in shards:
                raise name_clash(shards[item.name], item)
            shards[item.name] = item.location
            version = versions.get(item.location)
            done = done_shards.get(item.name)
            if done is None:
                units.append(WorkUnit(shard=item, version=version))
            elif version is not None and done.version is not None and version != done.version:
                changed += 1
                units.append(WorkUnit(shard=item, version=version))
            else:
                skipped_shards += 1
            continue
        if not next(select([item], include, exclude), None):
            continue
        if item.key in done_keys:
            skipped_images += 1
            continue
        ref_to_data(item)  # only files and URLs travel: refuse anything else now
        chunk.append(item)
        if len(chunk) == images_per_unit:
            units.append(WorkUnit(images=tuple(chunk)))
            chunk = []
    if chunk:
        units.append(WorkUnit(images=tuple(chunk)))
    unseen = tuple(sorted(name for name in done_shards if name not in shards))  # a folder's shard deleted?
    return Plan(units, skipped_shards, skipped_images, changed, unseen)


def _versions(shards: list[TarShard]) -> dict[str, str | None]:
    """``shard_version`` of each shard, by location: remote ones eight at a time."""
    from concurrent.futures import ThreadPoolExecutor

    remote = [shard for shard in shards if shard.remote]
    found = {shard.location: shard_version(shard) for shard in shards if not shard.remote}
    if remote:
        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="ramtag-versions") as pool:
            found.update(zip((shard.location for shard in remote), pool.map(shard_version, remote)))
    return found


def _whole(shard: TarShard, refs: Iterator[ImageRef]) -> Iterator[ImageRef]:
    """A shard's members, or ``ShardReadError`` if it is cut short (an interrupted download): its
    part is then not committed, and a re-run reads it again, as a local run retries its error row."""
    for ref in refs:
        source = ref.source
        if isinstance(source, Unusable) and source.kind == "truncated":
            raise ShardReadError(f"{shard.location}: {source.message}")
        yield ref
