"""The Typer application: one module per command, wired here, with the one error mapping.

Every command is registered through ``mapping_errors``: a ``RamtagError`` (a mistake or condition a
user can fix) becomes one ``error:`` line on stderr and its exit code (2 for usage mistakes, 1
otherwise), Ctrl-C becomes ``interrupted`` and 130, and anything else is a bug that keeps its
traceback. ``RAMTAG_DEBUG=1`` shows the traceback of the first kind too.

A command line that names a command gets an application holding only that command (``main``): the
other commands' modules are not imported, Typer builds no parser for them, and the root has no
``--version`` or ``--help`` flag for Typer to convert (its conversion imports Pydantic), so an
unknown option is answered quickly. ``app`` is the whole application: ``ramtag --version``,
``ramtag --help``, shell completion and the tests use it; ``build`` makes both from one table.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Annotated, Any

import typer

from ..version import __version__
from . import helpstyle
from .common import mapping_errors
from .leave import leave

# Command name -> (module in ramtag.cli, attribute): a command function, or a Typer group.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run_command"),
    "eval": ("eval", "eval_command"),
    "describe": ("describe", "describe_command"),
    "bench": ("bench", "bench_command"),
    "serve": ("serve", "serve_command"),
    "models": ("models", "app"),
    "xmp": ("xmp", "app"),
}
HELP = "Tag image collections with RAM++ (Recognize Anything Plus) and RAM."

helpstyle.install()
# One way to install completion, the scripts in completions/ (README), not Typer's installer.
_ADD_COMPLETION = not helpstyle.shell_completion_without_installer()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ramtag {__version__}")
        raise typer.Exit()


def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit."),
    ] = False,
) -> None:
    """Tag image collections with RAM++ (Recognize Anything Plus) and RAM."""


def _root_of_one_command() -> None:
    """Tag image collections with RAM++ (Recognize Anything Plus) and RAM."""


def _mapped_group(group: typer.Typer, name: str) -> typer.Typer:
    """``group`` with each of its commands wrapped by ``mapping_errors`` (once, however often the
    group is added to an application) and its examples."""
    for command in group.registered_commands:
        if not getattr(command.callback, "_ramtag_mapped", False):
            command.callback = mapping_errors(command.callback)
            command.callback._ramtag_mapped = True  # type: ignore[union-attr]
        command.epilog = helpstyle.epilog(f"{name} {command.name}")
    group.info.epilog = helpstyle.epilog(name)
    return group


def build(names: Iterable[str] = tuple(COMMANDS), *, version: bool = True) -> typer.Typer:
    """An application with the commands ``names`` (in the order given) and, with ``version``, the
    root ``--version`` flag."""
    application = typer.Typer(
        name="ramtag",
        help=HELP,
        no_args_is_help=True,
        # Beside one command the root's own -h is never reached (it would precede the command), and
        # Typer converts every flag it holds, its own help flag included.
        add_help_option=version,
        pretty_exceptions_show_locals=False,
        context_settings=helpstyle.CONTEXT,
        add_completion=_ADD_COMPLETION,
        epilog=helpstyle.epilog("ramtag"),
    )
    application.callback()(_root if version else _root_of_one_command)
    for name in names:
        module_name, attribute = COMMANDS[name]
        target = getattr(importlib.import_module(f"{__package__}.{module_name}"), attribute)
        if isinstance(target, typer.Typer):
            application.add_typer(_mapped_group(target, name), name=name)
        else:
            application.command(name, epilog=helpstyle.epilog(name))(mapping_errors(target))
    return application


def for_arguments(args: list[str]) -> typer.Typer:
    """The application a command line needs: only its command when its first word names one (root
    options such as ``--version`` come before a command, never after it), else the whole one."""
    if args and args[0] in COMMANDS and "_RAMTAG_COMPLETE" not in os.environ:
        return build([args[0]], version=False)
    return _whole()


def _whole() -> typer.Typer:
    whole = globals().get("app")
    if whole is None:
        whole = globals()["app"] = build()
    return whole


def __getattr__(name: str) -> Any:
    if name == "app":  # built at first use: the command line usually needs one command only
        return _whole()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    helpstyle.run(for_arguments(sys.argv[1:]))


def program() -> None:
    """The ``ramtag`` program (console script, ``python -m ramtag``): ``main``, then ``leave``."""
    try:
        main()
    except SystemExit as exit:
        leave(exit.code)
    leave(0)
