"""``ramtag models``: list, download and verify the released weights and the official data files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.markup import escape

from ..errors import RamtagError, UsageError
from ..hashing import sha256_file
from ..model.download import (
    FileCheck,
    cached_data_file,
    cached_weights,
    check_data_file,
    check_weights,
    data_dir,
    data_file,
    data_url,
    download_advice,
    weights_file,
    weights_source,
)
from ..model.registry import DATA_FILES, WEIGHTS
from ..paths import offline
from .common import err_console, plural

DEFAULT_MODEL = "ram_plus"

app = typer.Typer(
    help="The released RAM++/RAM weights and the official tag lists: list, download, verify.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _model_names() -> list[str]:
    return list(WEIGHTS)


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show the released weights and data files, and where they are cached, and the converted weights (no network)."""
    rows = inventory()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    # A row per file, its URL and path on lines of their own: long addresses are never cut mid-word.
    console = Console(highlight=False, soft_wrap=True)
    for row in rows:
        size = f", {decimal(row['size'])}" if row["size"] is not None else ""
        state = f"cached{size}" if row["path"] else "not downloaded"
        console.print(f"{row['name']}  ({row['kind']}, {state})", markup=False)
        console.print(f"  from  {row['source']}", markup=False)
        console.print(f"  {'at   ' if row['path'] else 'into '} {row['path'] or row['cache']}", markup=False)
    converted = [row for row in rows if row["kind"] == "converted"]
    if converted:
        total = decimal(sum(row["size"] for row in converted))
        console.print(f"converted weights: {total} in {converted[0]['cache']}, made again from the checkpoint "
                      "when deleted (delete them to reclaim the space)", markup=False)


def inventory() -> list[dict[str, Any]]:
    """One row per released file: what it is, where it comes from, where it is cached."""
    rows = []
    for name, source in WEIGHTS.items():
        kind = "spaces" if source.repo_type == "space" else "models"
        folder = _hub_cache() / f"{kind}--{source.repo_id.replace('/', '--')}"
        rows.append(_row(name, "weights", source.display, cached_weights(name), folder))
    for name in DATA_FILES:
        rows.append(_row(name, "data", data_url(name), cached_data_file(name), data_dir()))
    return rows + converted_rows()


def converted_rows() -> list[dict[str, Any]]:
    """The converted-weights cache: a file per checkpoint (and reading of it) loaded so far, made
    again from the checkpoint if deleted."""
    from ..model.cached import converted_dir, converted_metadata

    folder, rows = converted_dir(), []
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        metadata = converted_metadata(path)
        if metadata is not None:
            source = f"converted from the checkpoint with sha256 {metadata.get('source_sha256') or 'unknown'}"
            rows.append(_row(path.name, "converted", source, path, folder))
    return rows


def _row(name: str, kind: str, source: str, path: Path | None, cache: Path) -> dict[str, Any]:
    return {
        "name": name,
        "kind": kind,
        "source": source,
        "path": str(path) if path else None,
        "cache": str(cache),  # where it is (or would be) kept
        "size": path.stat().st_size if path else None,
    }


def _hub_cache() -> Path:
    """The Hugging Face cache the weights go to (``HF_HOME``/hub)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@app.command("download")
def download_command(
    names: Annotated[
        Optional[list[str]],
        typer.Argument(
            help=f"Models to fetch (default: {DEFAULT_MODEL}).", autocompletion=_model_names, show_default=False
        ),
    ] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Fetch every released model.")] = False,
    benchmarks: Annotated[
        bool,
        typer.Option(
            "--benchmarks",
            help="Also fetch the label files of the paper's test sets (ramtag eval --benchmark) and the CLIP "
            "text encoder their open-set protocols need.",
        ),
    ] = False,
    text_encoder: Annotated[
        bool,
        typer.Option(
            "--text-encoder",
            help="Fetch the CLIP text encoder that embeds open-set tags (describe --embed, run --tags); alone, "
            "only it.",
        ),
    ] = False,
) -> None:
    """Fetch the weights and the official data files, so that later runs (or a copy of the caches) work offline.

    Prints one "name<TAB>path" line per file on stdout.
    """
    if names and all_models:
        raise UsageError("give model names or --all, not both")
    chosen = list(WEIGHTS) if all_models else list(dict.fromkeys(names or [DEFAULT_MODEL]))
    sources = [weights_source(name) for name in chosen]  # every name checked before any download
    if offline():
        raise UsageError(
            "`ramtag models download` fetches files, but ramtag is offline (HF_HUB_OFFLINE or RAMTAG_OFFLINE is "
            f"set): run it without them on a connected machine, then copy {data_dir()} and the Hugging Face cache "
            f"({_hub_cache()}) to the same places here"
        )
    data_instead, weights_instead = download_advice()
    if names or all_models or benchmarks or not text_encoder:
        for name in DATA_FILES:
            typer.echo(f"{name}\t{data_file(name, instead=data_instead)}")
        for source in sources:
            err_console.print(f"fetching {source.display}", markup=False, soft_wrap=True)
            typer.echo(f"{source.name}\t{weights_file(source.name, instead=weights_instead)}")
    if benchmarks:
        _download_benchmarks()
    elif text_encoder:
        _download_text_encoder()
    err_console.print(
        f"To run offline elsewhere, copy {data_dir()} and the Hugging Face cache (HF_HOME) to the same places"
        " there and set RAMTAG_OFFLINE=1.",
        markup=False,
        soft_wrap=True,
    )


def _download_benchmarks() -> None:
    """Every benchmark's label files, and the text encoder of the open-set ones (rare-200, HICO)."""
    from ..groundtruth import benchmark_file
    from ..model.registry import BENCHMARKS

    for chosen in BENCHMARKS.values():
        for entry in (chosen.taglist, chosen.annotations, chosen.descriptions):
            if entry is not None:
                typer.echo(f"{entry.name}\t{benchmark_file(entry, chosen)}")
    _download_text_encoder()


def _download_text_encoder() -> None:
    from ..describe.encoder import DEFAULT_TEXT_ENCODER, TextEncoder

    err_console.print(f"fetching the text encoder {DEFAULT_TEXT_ENCODER}", markup=False, soft_wrap=True)
    TextEncoder(DEFAULT_TEXT_ENCODER)
    typer.echo(f"{DEFAULT_TEXT_ENCODER}\t{_hub_cache() / ('models--' + DEFAULT_TEXT_ENCODER.replace('/', '--'))}")


@app.command("verify")
def verify_command(
    name: Annotated[
        Optional[str],
        typer.Argument(
            help=f"Model whose cached weights to check (default: {DEFAULT_MODEL});"
            " with --checkpoint, the kind the file must be.",
            autocompletion=_model_names,
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint", help="Check this weights file instead of the cached release.", exists=True, dir_okay=False
        ),
    ] = None,
) -> None:
    """Re-hash the cached files and load the checkpoint; exit non-zero if anything is wrong.

    Data files that were never downloaded are reported but are not a failure.
    """
    kind = weights_source(name).kind if name else None
    if checkpoint is None:
        weights = check_weights(name or DEFAULT_MODEL)
    else:
        weights = FileCheck("checkpoint", checkpoint, sha256_file(checkpoint, remember=False))
    data = {data_name: check_data_file(data_name) for data_name in DATA_FILES}
    checks = [*data.values(), *_converted_checks(), weights]
    failures = sum(_print_check(check, needed=check is weights) for check in checks)
    if weights.path is None:
        failures += 1
        err_console.print(
            f"{weights.name} is not downloaded:"
            f" run `ramtag models download {weights.name}` or pass --checkpoint PATH",
            markup=False,
            soft_wrap=True,
        )
    elif weights.ok:
        official = data["tag_list"] if checkpoint is None else None  # the release goes with the official list
        failures += _verify_loads(weights.path, kind, official.path if official is not None and official.ok else None)
    absent = sum(check.path is None for check in checks[:-1])
    later = f"; {plural(absent, 'data file')} not downloaded yet (not a failure: fetched at first use)" if absent else ""
    if failures:
        what = "the weights are not downloaded" if failures == 1 and weights.path is None else plural(failures, "problem")
        err_console.print(f"[bold red]verify failed:[/] {escape(what)}{escape(later)}", markup=True, soft_wrap=True)
        raise typer.Exit(1)


def _converted_checks() -> list[FileCheck]:
    """The converted copies whose sha256 was recorded when they were made, re-hashed."""
    from ..model.cached import content_record, converted_dir

    checks = []
    for path in sorted(converted_dir().glob("*.safetensors")):
        try:
            expected = content_record(path).read_text(encoding="ascii").strip()
            checks.append(FileCheck("converted", path, sha256_file(path, remember=False), expected))
        except OSError:
            continue  # made before ramtag recorded it, or gone meanwhile
    return checks


def _print_check(check: FileCheck, *, needed: bool = True) -> int:
    """One stdout line for a file; returns 1 when it counts as a failure (the caller says why an
    absent checkpoint is one: a data file never downloaded is fetched at first use)."""
    if check.path is None:
        typer.echo(f"missing  {check.name:<12} not downloaded" if needed else
                   f"later    {check.name:<12} not downloaded yet (fetched at first use)")
        return 0
    if not check.ok:
        real = check.path.resolve()  # the Hub cache's snapshot entry is a link: the blob is what to delete
        typer.echo(f"DAMAGED  {check.name:<12} sha256 {check.sha256} (expected {check.expected})  {real}")
        again = ("it is made again from the .pth at the next run" if check.name == "converted"
                 else "then download it again (`ramtag models download`)")
        err_console.print(f"{real} is damaged: delete it; {again}", markup=False, soft_wrap=True)
        return 1
    note = "" if check.expected else "  (no reference sha256 to compare with)"
    typer.echo(f"ok       {check.name:<12} sha256 {check.sha256}  {check.path}{note}")
    return 0


def _verify_loads(path: Path, kind: str | None, tag_list: Path | None = None) -> int:
    """Load the checkpoint and print what it is; returns the number of failures (0 or 1). With
    ``tag_list`` (the official one, for the released weights), the two must have as many tags."""
    from ..model.load import load_model

    try:
        # use_cache=False: read the file itself, not a conversion of it cached by an earlier run.
        _model, info = load_model(path, use_cache=False)
    except RamtagError as exc:
        err_console.print(f"[bold red]cannot load:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
        return 1
    config = info.config
    depths = "-".join(str(depth) for depth in config.swin.depths)
    typer.echo(
        f"loads    {path}: {config.kind}, {config.num_tags} tags, {config.image_size}x{config.image_size} px,"
        f" Swin embed_dim {config.swin.embed_dim} depths {depths}"
    )
    if kind is not None and config.kind != kind:
        err_console.print(f"{path} is a {config.kind} checkpoint, not {kind}", markup=False, soft_wrap=True)
        return 1
    if tag_list is not None:
        from ..model.labels import read_lines

        listed = len(read_lines(tag_list, "tag list"))
        if config.num_tags != listed:
            err_console.print(f"{path} holds {config.num_tags} tags but the official tag list {tag_list} has {listed}: "
                              "the weights are not the release's; delete them and run `ramtag models download`",
                              markup=False, soft_wrap=True)
            return 1
    return 0
