"""The tar shards an output has rows of: where each was, and the version read to its end.

An output records, in its metadata (``shards``), each tar shard a run read: where it was (a local
shard by the real path of its folder, a remote one by its URL) and, for one read to its end without
``--include``/``--exclude``, its version (``inputs.versions.shard_version``: size and modification
time, or a store's ETag), how many members it had and whether hidden ones were read. A later run:

- does not read (over a URL, download) a shard found at its recorded version, in the same place,
  with the same ``--hidden`` and no ``--include``/``--exclude``, while the output holds exactly its
  members and none is an error row to retry: their rows stand (``unchanged``);
- counts the rows of a recorded shard it did not find, deleted from a folder it was given, as rows
  of files gone (``gone``): reported, and removed with ``--prune``.

An unfinished run keeps where its shards were beside its parts (``located``), so that a shard
deleted before the run is continued counts as gone too.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .rerun import gone, hidden_member

if TYPE_CHECKING:
    from ..inputs.shards import TarShard
    from .rerun import RowIndex


class ShardVersions:
    """What an output recorded about its shards (``recorded``), and what this run found."""

    def __init__(self, recorded: dict[str, dict[str, Any]] | None = None) -> None:
        self.recorded = {name: entry for name, entry in (recorded or {}).items() if isinstance(entry, dict)}
        self.found: dict[str, dict[str, str]] = {}  # this run's shards: where, and version taken before reading
        self.skipped: set[str] = set()
        self._members: dict[str, list[str]] | None = None

    def resume(self, located: dict[str, Any]) -> None:
        """Where the shards of an unfinished run's parts were (what ``located`` kept)."""
        for name, where in located.items():
            if isinstance(where, str) and self.recorded.get(name, {}).get("where") != where:
                self.recorded[name] = {"where": where}  # read there since: where it is now

    def located(self, index: RowIndex) -> dict[str, str]:
        """Where every shard with rows was: what an unfinished run keeps beside its parts."""
        # A snapshot: the inputs' thread (``stopping.prefetched``) adds shards while a part is saved.
        found = [(name, entry) for name, entry in list(self.found.items()) if name in index.shards]
        return {name: str(entry["where"]) for name, entry in [*self.recorded.items(), *found] if "where" in entry}

    @staticmethod
    def take(shard: TarShard) -> dict[str, str]:
        """Where ``shard`` is and, when it can be told, its version now."""
        from ..inputs.versions import shard_version

        where = shard.location if shard.remote else \
            os.path.join(os.path.realpath(os.path.dirname(shard.location) or "."), os.path.basename(shard.location))
        version = shard_version(shard)
        return {"where": where} if version is None else {"version": version, "where": where}

    def unchanged(self, shard: TarShard, index: RowIndex) -> list[str] | None:
        """The keys of ``shard``'s members when it need not be read: the very file, at its recorded
        version, read with the same --hidden; the output holding its members alone (not a member
        gone since and kept, nor rows of another collection's shard), none an error to retry.
        ``None``: read it."""
        if shard.name in self.found:  # discovery yields each shard once: not asked twice
            return None
        now = self.found[shard.name] = self.take(shard)
        then = self.recorded.get(shard.name)
        if not index.rerun.whole_shards:  # --include/--exclude match members by their names, only known when read
            return None
        if then is None or "version" not in now or then.get("version") != now["version"] \
                or then.get("where") != now["where"] or then.get("hidden", False) != index.rerun.hidden:
            return None
        keys = self._member_keys(index).get(shard.name, [])
        if not index.rerun.hidden:  # rows of hidden members read with --hidden once are kept, not found
            keys = [key for key in keys if not hidden_member(key)]
        if len(keys) != then.get("members") \
                or (index.rerun.retry_errors and any(index.is_error(key) for key in [shard.name, *keys])):
            return None
        self.skipped.add(shard.name)
        return keys

    def gone(self, index: RowIndex) -> list[str]:
        """The keys of recorded shards this run did not find, deleted from a folder it was given
        (``Rerun.shard_folders``): rows of files gone, as for images."""
        folders, found = index.rerun.shard_folders, []
        for name, entry in self.recorded.items():
            where = str(entry.get("where", ""))
            if name not in self.found and os.path.dirname(where) in folders and gone(where):
                keys = [*self._member_keys(index).get(name, []), *([name] if name in index.entries else [])]
                found += [key for key in keys if not index.found(key)]
        return found

    def to_record(self, index: RowIndex, gone_keys: list[str]) -> dict[str, dict[str, Any]]:
        """What the output records now: this run's shards read whole (or skipped) with their
        version, those read in part with where they are; the others as recorded, unless they are
        ``gone_keys`` pruned."""
        versions = dict(self.recorded)
        if index.rerun.prune:
            for key in gone_keys:
                versions.pop(key.partition("/")[0], None)
        for name, now in self.found.items():
            if name in self.skipped:
                versions[name] = self.recorded[name]
            elif "version" in now and index.shards.get(name):
                versions[name] = {**now, "members": index.members.get(name, 0), "hidden": index.rerun.hidden}
            elif name in index.shards:  # read in part: where it is, so that its deletion is seen
                versions[name] = {"where": now["where"]}
            elif "version" in now and index.rerun.whole_shards:  # read to its end: no image in it
                versions[name] = {**now, "members": 0, "hidden": index.rerun.hidden}
        return versions

    def _member_keys(self, index: RowIndex) -> dict[str, list[str]]:
        if self._members is None:
            self._members = {}
            for key in index.entries:
                name, slash, _ = key.partition("/")
                if slash and name in self.recorded:
                    self._members.setdefault(name, []).append(key)
        return self._members
