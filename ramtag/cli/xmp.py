"""``ramtag xmp clean``, and what ``ramtag run --xmp`` needs: its options, writer and resume test."""

from __future__ import annotations

import time
from collections.abc import Container
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import UsageError
from .common import err_console, reporting_errors

if TYPE_CHECKING:
    import pyarrow as pa

    from ..inputs import ImageRef
    from ..outputs.xmp import SidecarWriter

XMP_PANEL = "XMP sidecars"

app = typer.Typer(
    help="XMP sidecars: take ramtag's keywords out again.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _group() -> None:
    """XMP sidecars: take ramtag's keywords out again."""  # a group even with one command


class Naming(str, Enum):
    auto = "auto"
    ext = "ext"
    replace = "replace"


XmpOpt = Annotated[
    bool,
    typer.Option(
        "--xmp",
        help="Write the tags into each image's XMP sidecar (created, or merged into the one there: "
        "a person's keywords and other programs' data are kept). A rerun skips images whose sidecar "
        "already holds ramtag's tags from the same settings.",
        rich_help_panel=XMP_PANEL,
    ),
]
XmpNamingOpt = Annotated[
    Naming,
    typer.Option(
        "--xmp-naming",
        help="ext: IMG_1.CR2.xmp (darktable, digiKam, Immich); replace: IMG_1.xmp (Lightroom, "
        "Capture One); auto: the one that exists (ext if both), else ext.",
        rich_help_panel=XMP_PANEL,
    ),
]
XmpParentOpt = Annotated[
    str,
    typer.Option(
        "--xmp-parent",
        help="Parent keyword of the tags in the hierarchical fields (ramtag|cat, ramtag/cat); "
        "'' puts them at the top level.",
        rich_help_panel=XMP_PANEL,
    ),
]


def sidecar_writer(
    enabled: bool, naming: Naming, parent: str, metadata: dict[str, Any], lang: str
) -> SidecarWriter | None:
    """The run's sidecar writer (``--xmp``), or None."""
    if not enabled:
        return None
    from ..outputs.xmp import Provenance, SidecarWriter

    if parent.strip(" |") != parent or "||" in parent:
        raise UsageError(f"--xmp-parent {parent!r}: no leading, trailing or doubled '|' (nor spaces at the ends)")
    provenance = Provenance.from_metadata(metadata, parent=parent, lang=lang)
    return SidecarWriter(provenance, naming=naming.value)


class Pending:
    """Which images a run still has to tag: not in ``--out`` yet, or whose sidecar is not current.

    With ``--out`` and ``--xmp`` an image is done only when both are; calling counts the skipped.
    """

    def __init__(self, done: Container[str], has_file: bool, sidecars: SidecarWriter | None) -> None:
        self.done = done
        self.has_file = has_file
        self.sidecars = sidecars
        self.skipped = 0
        self.started = time.time()

    def check(self, ref: ImageRef) -> bool:
        if self.sidecars is None:
            return ref.key not in self.done
        if self.has_file and ref.key not in self.done:
            return True
        return not self.sidecars.is_current(ref.path)

    def counted(self, ref: ImageRef) -> bool:
        """For the progress total, counted beside the tagging: a sidecar this run wrote still counts."""
        if self.check(ref):
            return True
        if self.sidecars is None:
            return False
        try:
            return self.sidecars.path_for(ref.path).stat().st_mtime >= self.started
        except OSError:
            return False

    def __call__(self, ref: ImageRef) -> bool:
        todo = self.check(ref)
        if not todo and self.sidecars is not None and not self.has_file:  # --out reports its own
            self.skipped += 1
        return todo


class SidecarsOnly:
    """``--xmp`` without ``--out``: the sidecars are the output; nothing goes to stdout."""

    dest = None
    done: frozenset[str] = frozenset()

    def write(self, batch: pa.RecordBatch) -> None:
        pass

    def save(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def __enter__(self) -> SidecarsOnly:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass


def report_skipped(pending: Pending, quiet: bool) -> None:
    if pending.skipped and not quiet:
        count = f"{pending.skipped} image" + ("" if pending.skipped == 1 else "s")
        err_console.print(f"skipped {count} whose sidecar is up to date", markup=False)


@app.command("clean")
def clean_command(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Folders (searched recursively for .xmp files) and sidecar files.", show_default=False),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Only list the sidecars that would change.")
    ] = False,
    hidden: Annotated[
        bool, typer.Option("--hidden", help="Also search hidden files and folders.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary; errors only.")] = False,
) -> None:
    """Remove ramtag's keywords and records from XMP sidecars, leaving everything else as it was.

    Prints each sidecar that changed; a sidecar left with nothing at all (ramtag created it) is
    deleted. A sidecar that cannot be read or parsed is left alone, reported, and the exit code is 1.
    """
    from ..outputs.xmp import SidecarError, clean, find_sidecars

    with reporting_errors():
        missing = [str(path) for path in paths if not path.exists()]
        if missing:
            raise UsageError(f"not found: {', '.join(missing)}")
        counts = {"cleaned": 0, "removed": 0, "untouched": 0, "errors": 0}
        for path in find_sidecars(paths, hidden=hidden):
            try:
                outcome = clean(path, dry_run=dry_run)
            except SidecarError as exc:
                counts["errors"] += 1
                err_console.print(f"{path}: {exc}", markup=False, soft_wrap=True)
                continue
            counts[outcome] += 1
            if outcome != "untouched":
                verb = {"cleaned": "cleaned", "removed": "deleted"}[outcome]
                typer.echo(f"{'would be ' if dry_run else ''}{verb}: {path}")
    if not quiet:
        total = sum(counts.values())
        err_console.print(
            f"{total} sidecar{'' if total == 1 else 's'}: {counts['cleaned']} cleaned, "
            f"{counts['removed']} deleted (only ramtag's entries were in them), "
            f"{counts['untouched']} without ramtag entries, {counts['errors']} errors"
            + (" (dry run: nothing written)" if dry_run else ""),
            markup=False, soft_wrap=True,
        )
    if counts["errors"]:
        raise typer.Exit(1)
