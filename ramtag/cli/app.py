"""The Typer application: one module per command, wired here."""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import bench, describe, eval, models, run, xmp

app = typer.Typer(
    name="ramtag",
    help="Tag image collections with RAM++ (Recognize Anything Plus) and RAM.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ramtag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Tag image collections with RAM++ (Recognize Anything Plus) and RAM."""


app.command("run")(run.run_command)
app.command("eval")(eval.eval_command)
app.command("describe")(describe.describe_command)
app.command("bench")(bench.bench_command)
app.add_typer(models.app, name="models")
app.add_typer(xmp.app, name="xmp")


def main() -> None:
    app()
