"""The Typer application: one module per command, wired here, with the one error mapping.

Every command is registered through ``mapping_errors``: a ``RamtagError`` (a mistake or condition a
user can fix) becomes one ``error:`` line on stderr and its exit code (2 for usage mistakes, 1
otherwise), Ctrl-C becomes ``interrupted`` and 130, and anything else is a bug that keeps its
traceback. ``RAMTAG_DEBUG=1`` shows the traceback of the first kind too.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..version import __version__
from . import bench, describe, eval, models, run, xmp
from .common import mapping_errors

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


app.command("run")(mapping_errors(run.run_command))
app.command("eval")(mapping_errors(eval.eval_command))
app.command("describe")(mapping_errors(describe.describe_command))
app.command("bench")(mapping_errors(bench.bench_command))
for group, name in ((models.app, "models"), (xmp.app, "xmp")):
    for command in group.registered_commands:
        command.callback = mapping_errors(command.callback)
    app.add_typer(group, name=name)


def main() -> None:
    app()
