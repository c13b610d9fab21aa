"""``ramtag xmp clean``, and the options of ``ramtag run --xmp`` (the sidecars: ``outputs.sidecars``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..engine.job import NAMINGS
from ..errors import OutputError, UsageError
from ..text import terminal_text
from .common import choices, err_console, plural

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
EmbedOpt = Annotated[
    bool,
    typer.Option(
        "--embed",
        help="Write the tags into the image files themselves (JPEG, TIFF, PNG, WebP, HEIC, AVIF, DNG), "
        "as Lightroom Classic, Immich and PhotoPrism read them; needs ExifTool. Each photo is rewritten "
        "on a verified copy, keeps its date, and `ramtag xmp clean` takes the tags out again. "
        "Camera raws other than DNG get sidecars instead (their bytes are never touched).",
        rich_help_panel=XMP_PANEL,
    ),
]
TouchOpt = Annotated[
    bool,
    typer.Option(
        "--touch",
        help="With --embed: give each photo written to the current modification time (by default it "
        "keeps its own, so backups and file lists see no change of date).",
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
        "levels separated by '|' (AI|ramtag); '' puts them at the top level.",
        rich_help_panel=XMP_PANEL,
    ),
]


@app.command("clean")
def clean_command(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Folders (searched recursively for .xmp sidecars and for photos with embedded keywords), "
            "sidecar files and photos.", show_default=False, metavar="PATH",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Only list the sidecars and photos that would change.")
    ] = False,
    hidden: Annotated[
        bool, typer.Option("--hidden", help="Also search hidden files and folders.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No summary: the files changed (on stdout) and errors only.")
    ] = False,
) -> None:
    """Remove ramtag's keywords and records from XMP sidecars and photos, leaving everything else as it was.

    Prints each file that changed; a sidecar left with nothing at all (ramtag created it) is deleted; a photo gets back the metadata it had (with --embed, ramtag wrote into it). A file that cannot be read or parsed is left alone, reported, and the exit code is 1.
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
            err_console.print(terminal_text(f"{path}: {exc}"), markup=False, soft_wrap=True)
            continue
        counts[outcome] += 1
        if outcome != "untouched":
            verb = {"cleaned": "cleaned", "removed": "deleted"}[outcome]
            typer.echo(f"{'would be ' if dry_run else ''}{verb}: {terminal_text(str(path))}")
    photos = _clean_photos(paths, dry_run=dry_run, hidden=hidden)
    if not quiet:
        total = sum(counts.values())
        if total or not (photos["cleaned"] or photos["errors"]):  # "0 sidecars" only when nothing else is said
            would = "would be " if dry_run else ""
            err_console.print(
                f"{plural(total, 'sidecar')}: {counts['cleaned']} {would}cleaned, "
                f"{counts['removed']} {would}deleted (only ramtag's entries were in them), "
                f"{counts['untouched']} without ramtag entries, {plural(counts['errors'], 'error')}"
                + (" (dry run: nothing written)" if dry_run else ""),
                markup=False, soft_wrap=True,
            )
        if photos["cleaned"] or photos["errors"]:
            err_console.print(
                f"{plural(photos['cleaned'], 'photo')} {'would be ' if dry_run else ''}cleaned of embedded keywords, "
                f"{photos['untouched']} without them, {plural(photos['errors'], 'error')}"
                + (" (dry run: nothing written)" if dry_run else ""), markup=False, soft_wrap=True,
            )
    if counts["errors"] or photos["errors"]:
        raise typer.Exit(1)


def _clean_photos(paths: list[Path], *, dry_run: bool, hidden: bool) -> dict[str, int]:
    """The keywords ``run --embed`` wrote into photos, taken out (ExifTool only once one is found)."""
    from ..exiftool import ExifTool, ExifToolError, find_exiftool
    from ..outputs.embedded import EmbedError, clean_embedded, find_embeddable, holds_ramtag_record

    counts = {"cleaned": 0, "untouched": 0, "errors": 0}
    tool = None
    missing: Exception | None = None  # no ExifTool: photos ramtag wrote into are only found and reported
    marked: list[Path] = []
    try:
        for path in find_embeddable(paths, hidden=hidden):
            if tool is None and missing is None:
                try:
                    tool = ExifTool(find_exiftool())
                except (UsageError, ExifToolError) as exc:
                    if any(path == given for given in paths):  # a photo named directly must be cleaned
                        raise
                    missing = exc
            if missing is not None:
                if holds_ramtag_record(path):
                    marked.append(path)
                continue
            try:
                outcome = clean_embedded(tool, path, dry_run=dry_run)
            except (EmbedError, ExifToolError, OutputError) as exc:
                counts["errors"] += 1
                err_console.print(terminal_text(f"{path}: {exc}"), markup=False, soft_wrap=True)
                continue
            counts[outcome] += 1
            if outcome == "cleaned":
                typer.echo(f"{'would be ' if dry_run else ''}cleaned: {terminal_text(str(path))}")
    finally:
        if tool is not None:
            tool.close()
    if marked:  # left as they are: the clean is not done, and the exit code says so
        from ..exiftool import INSTALL

        why = f"cleaning photos needs ExifTool: {INSTALL}" if isinstance(missing, UsageError) else str(missing)
        err_console.print(f"not cleaned: {plural(len(marked), 'photo')} with keywords ramtag embedded (the first: "
                          f"{marked[0]}); {why}", markup=False, soft_wrap=True)
        counts["errors"] += len(marked)
    return counts
