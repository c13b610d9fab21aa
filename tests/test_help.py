"""Every command's help: an example section, help text on every option, values as words, and a
snapshot of it all (``RAMTAG_UPDATE_SNAPSHOT=1 python -m pytest tests/test_help.py`` rewrites it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ramtag.cli.app import app, for_arguments

SNAPSHOT = Path(__file__).with_name("help_snapshot.txt")
runner = CliRunner()


def commands() -> list[tuple[str, object]]:
    """(path, click command) for every command, groups included."""
    root = typer.main.get_command(app)
    found = []

    def walk(command, path: str) -> None:
        found.append((path, command))
        for name, child in sorted(getattr(command, "commands", {}).items()):
            walk(child, f"{path} {name}")

    walk(root, "ramtag")
    return found


def describe(path: str, command) -> list[str]:
    import click  # noqa: F401 - only the objects' attributes are read

    ctx = type("Ctx", (), {"obj": None, "command_path": path, "help_option_names": ["-h", "--help"],
                           "show_default": None, "resilient_parsing": False, "auto_envvar_prefix": None,
                           "terminal_width": 100, "max_content_width": 100, "color": None,
                           "find_root": lambda self: self, "lookup_default": lambda self, *a, **k: None,
                           "token_normalize_func": None})()
    lines = [f"## {path}", f"   {(command.help or '').strip().splitlines()[0]}"]
    for param in command.params:
        names = " ".join([*param.opts, *param.secondary_opts])
        try:
            shown = param.display_type_rich(ctx) if hasattr(param, "display_type_rich") else None
        except Exception:  # noqa: BLE001 - a context stand-in too thin for this version's Typer
            shown = None
        help_text = " ".join((getattr(param, "help", None) or "").split())
        lines.append(f"   {names} {shown or ''} :: {help_text}".rstrip())
    lines.append(f"   epilog: {' | '.join(line.strip() for line in (command.epilog or '').splitlines() if line.strip())}")
    return lines


@pytest.mark.parametrize(("path", "command"), commands(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_command_has_examples_and_every_option_help(path: str, command) -> None:
    assert command.epilog and command.epilog.startswith("Examples:"), f"{path}: no examples"
    assert command.epilog.count("\n  ramtag ") >= 2, f"{path}: fewer than two examples"
    for param in command.params:
        if isinstance(param, typer.core.TyperArgument) or param.hidden:
            continue
        assert (param.help or "").strip(), f"{path} {param.opts}: no help text"
    args = path.split()[1:]
    shown = runner.invoke(app, [*args, "-h"], env={"COLUMNS": "100"})
    assert shown.exit_code == 0, shown.output
    text = shown.stdout
    assert "Examples:" in text and "ramtag " in text.split("Examples:")[1]
    for noise in ("<bool>", "<list[", "<int range>", "<str>", "{paths}"):
        assert noise not in text, f"{path}: {noise!r} in its help"


@pytest.mark.parametrize("path", [path for path, _ in commands() if " " in path])
def test_a_command_line_gets_its_command_alone_with_the_same_help(path: str) -> None:
    # `ramtag run ...` builds an application holding `run` only (its option errors answer sooner):
    # what that command shows and accepts must not differ from the whole application's
    args = path.split()[1:]
    alone = for_arguments(args)
    assert sorted(typer.main.get_command(alone).commands) == [args[0]]
    want = runner.invoke(app, [*args, "-h"], env={"COLUMNS": "100"})
    got = runner.invoke(alone, [*args, "-h"], env={"COLUMNS": "100"})
    assert got.exit_code == want.exit_code == 0, got.output
    assert got.stdout == want.stdout


def test_a_command_line_without_a_command_gets_the_whole_application() -> None:
    for args in ([], ["--version"], ["-h"], ["rn"], ["photos"]):
        assert for_arguments(args) is app
    shown = runner.invoke(for_arguments(["rn"]), ["rn"])
    assert shown.exit_code == 2 and "Did you mean 'run'?" in shown.output  # the whole list to suggest from


def test_one_way_to_install_completion() -> None:
    shown = runner.invoke(app, ["-h"], env={"COLUMNS": "100"})
    assert "--install-completion" not in shown.stdout and "--show-completion" not in shown.stdout
    script = runner.invoke(app, [], prog_name="ramtag", env={"_RAMTAG_COMPLETE": "source_bash"})
    assert script.exit_code == 0 and "complete -o default -F _ramtag_completion ramtag" in script.stdout


def test_help_snapshot() -> None:
    text = "\n".join(line for path, command in commands() for line in describe(path, command)) + "\n"
    if os.environ.get("RAMTAG_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert text == SNAPSHOT.read_text(encoding="utf-8"), (
        "the help changed: check it, then RAMTAG_UPDATE_SNAPSHOT=1 python -m pytest tests/test_help.py"
    )


def test_click_errors_are_one_line_like_ramtags(tmp_path: Path) -> None:
    (tmp_path / "-leading.jpg").write_bytes(b"")  # a file whose name Click reads as options
    for args, words in (
        (["run", "-leading.jpg"], "error: No such option: -l; -leading.jpg is a file: write it ./-leading.jpg"),
        (["run", "photos", "--lang", "fr"], "error: Invalid value for '--lang': 'fr' is not one of 'en', 'zh', 'both'."),
        (["run", "--nope"], "error: No such option: --nope"),
        (["xmp", "clean"], "error: Missing argument 'PATH'."),
    ):
        done = subprocess.run([sys.executable, "-m", "ramtag", *args], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2
        assert done.stderr.startswith(words) and done.stderr.count("\n") == 1, done.stderr
        assert "--help'" in done.stderr
