"""``ramtag xmp clean``, and the options of ``ramtag run --xmp`` (the sidecars: ``outputs.sidecars``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..engine.job import NAMINGS
from ..errors import UsageError
from .common import choices, err_console

XMP_PANEL = "XMP sidecars"

app = typer.Typer(
    help="XMP sidecars: take ramtag's keywords out again.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _group() -> None:
    """XMP sidecars: take ramtag's keywords out again."""  # a group even with one command


Naming = choices("Naming", NAMINGS)


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
    from ..outputs.sidecars import SidecarError, clean, find_sidecars

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
