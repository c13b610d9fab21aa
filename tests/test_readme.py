"""README.md's set-up commands stay true: CI runs exactly its test command."""

from __future__ import annotations

import re

from conftest import REPO


def _setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [block.strip() for block in blocks[:2]]


def test_readme_opens_with_install_and_test_commands() -> None:
    run, test = _setup_commands()
    assert "ramtag run ./photos --out tags.parquet" in run and run.startswith("pip install")
    assert "pytest" in test and test.startswith("pip install")


def test_ci_runs_exactly_the_readme_test_command() -> None:
    _, test = _setup_commands()
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines


def test_readme_documents_every_run_option() -> None:
    from typer.testing import CliRunner

    from ramtag.cli.app import app

    text = (REPO / "README.md").read_text(encoding="utf-8")
    help_text = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"}).stdout
    for option in ("--out", "--format", "--overwrite", "--batch-size", "--workers", "--device",
                   "--precision", "--threshold", "--thresholds", "--top-k", "--lang", "--all-scores",
                   "--include", "--exclude", "--checkpoint", "--tag-list", "--tag-list-zh"):
        assert option in help_text, option
        assert f"`{option}" in text or f"{option} " in text, option
