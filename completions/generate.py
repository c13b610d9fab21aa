"""Regenerate the shell completion scripts from the app: ``python completions/generate.py``."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from ramtag.cli.app import app

SCRIPTS = {"bash": "ramtag.bash", "zsh": "_ramtag", "fish": "ramtag.fish"}


def main() -> None:
    here = Path(__file__).resolve().parent
    for shell, name in SCRIPTS.items():
        result = CliRunner().invoke(
            app, [], prog_name="ramtag", env={"_RAMTAG_COMPLETE": f"source_{shell}"}
        )
        if result.exit_code != 0:
            raise SystemExit(f"could not generate the {shell} script: {result.output}")
        (here / name).write_text(result.stdout, encoding="utf-8")
        print(f"wrote completions/{name}")


if __name__ == "__main__":
    main()
