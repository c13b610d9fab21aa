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
from . import bench, describe, eval, models, run, serve, xmp
from . import helpstyle
from .common import mapping_errors
from .leave import leave

helpstyle.install()
app = typer.Typer(
    name="ramtag",
    help="Tag image collections with RAM++ (Recognize Anything Plus) and RAM.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    context_settings=helpstyle.CONTEXT,
    # One way to install completion, the scripts in completions/ (README), not Typer's installer.
    add_completion=not helpstyle.shell_completion_without_installer(),
    epilog=helpstyle.epilog("ramtag"),
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


for name, module in (("run", run.run_command), ("eval", eval.eval_command),
                     ("describe", describe.describe_command), ("bench", bench.bench_command),
                     ("serve", serve.serve_command)):
    app.command(name, epilog=helpstyle.epilog(name))(mapping_errors(module))
for group, name in ((models.app, "models"), (xmp.app, "xmp")):
    for command in group.registered_commands:
        command.callback = mapping_errors(command.callback)
        command.epilog = helpstyle.epilog(f"{name} {command.name}")
    group.info.epilog = helpstyle.epilog(name)
    app.add_typer(group, name=name)


def main() -> None:
    helpstyle.run(app)


def program() -> None:
    """The ``ramtag`` program (console script, ``python -m ramtag``): ``main``, then ``leave``."""
    try:
        main()
    except SystemExit as exit:
        leave(exit.code)
    leave(0)
