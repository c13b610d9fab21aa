"""The command line as a user meets it: help, version, shell completions, one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO
from ramtag import __version__
from ramtag.cli.app import app

SHELLS = {"bash": "ramtag.bash", "zsh": "_ramtag", "fish": "ramtag.fish"}


def completion_script(shell: str) -> str:
    result = CliRunner().invoke(app, [], prog_name="ramtag", env={"_RAMTAG_COMPLETE": f"source_{shell}"})
    assert result.exit_code == 0, result.output
    return result.stdout


def test_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"ramtag {__version__}"


def test_help_lists_only_working_commands() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "models"):
        assert command in result.stdout


@pytest.mark.parametrize("args", [[], ["models"], ["xmp"]])
def test_a_group_alone_shows_its_help_once(tmp_path: Path, args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "ramtag", *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    shown = done.stdout + done.stderr
    assert shown.count("Usage: ") == 1 and "Examples:" in shown, shown


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_completion_scripts_are_current(shell: str) -> None:
    """completions/ is generated from the app; regenerate with `python completions/generate.py`."""
    committed = (REPO / "completions" / SHELLS[shell]).read_text(encoding="utf-8")
    assert committed == completion_script(shell), (
        f"completions/{SHELLS[shell]} is stale: run `python completions/generate.py`"
    )


def test_bad_checkpoint_is_one_line_on_stderr(tmp_path: Path, ramplus_tiny) -> None:
    broken = tmp_path / "ram_plus.pth"
    broken.write_bytes(ramplus_tiny.checkpoint.read_bytes()[:1_000_000])
    result = CliRunner().invoke(
        app,
        ["run", str(ramplus_tiny.images / "demo4.jpg"), "--checkpoint", str(broken),
         "--tag-list", str(ramplus_tiny.tags)],
    )
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(broken) in lines[0].replace("\n", "") and "download it again" in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_the_threshold_warning_waits_for_the_weights_to_load(tmp_path: Path, ramplus_tiny) -> None:
    """A tag list that is not the official one gets every tag 0.68, said as a warning; with weights
    that do not load, the error alone is said (the warning came first, before it)."""
    import warnings

    from ramtag import load_tagger
    from ramtag.errors import CheckpointError, DefaultThresholdWarning

    broken = tmp_path / "ram_plus.pth"
    broken.write_bytes(ramplus_tiny.checkpoint.read_bytes()[:1_000_000])
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError):
            load_tagger(checkpoint=broken, tag_list=ramplus_tiny.tags, device="cpu")
    assert not said
    with pytest.warns(DefaultThresholdWarning, match="every tag uses the threshold 0.68"):
        load_tagger(checkpoint=ramplus_tiny.checkpoint, tag_list=ramplus_tiny.tags, device="cpu")
    short = tmp_path / "three.txt"  # a short thresholds file keeps its own category when deferred
    short.write_text("0.5\n0.5\n0.5\n", encoding="utf-8")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        load_tagger(checkpoint=ramplus_tiny.checkpoint, tag_list=ramplus_tiny.tags, thresholds=short, device="cpu")
    assert [w.category.__name__ for w in said] == ["RamtagWarning"] and "3 thresholds for the 16" in str(said[0].message)


def test_offline_without_cached_weights_names_the_fix(tmp_path: Path) -> None:
    tags = tmp_path / "tags.txt"
    tags.write_text("cat\ndog\n", encoding="utf-8")
    image = tmp_path / "x.jpg"
    image.write_bytes(b"")
    result = CliRunner().invoke(app, ["run", str(image), "--tag-list", str(tags)])
    assert result.exit_code != 0
    assert "--checkpoint" in result.stderr and "offline" in result.stderr
    assert "Traceback" not in result.output


def _leaving(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter that looks as if torch were loaded, runs ``body``, then ``leave``s; a
    global's ``__del__`` says on stderr whether the interpreter's teardown ran."""
    script = (
        "import atexit, sys, threading, time, types\n"
        "from ramtag.cli.leave import leave\n"
        "sys.modules.setdefault('torch', types.ModuleType('torch'))\n"
        "class Teardown:\n    def __del__(self):\n        print('teardown', file=sys.stderr)\n"
        "keep = Teardown()\n"
        f"atexit.register(lambda: open({str(tmp_path / 'atexit')!r}, 'w').close())\n"
        "import ctypes\n"
        "ctypes.CDLL(None).printf(b'native ')\n"  # C's stdio buffer, for a pipe not flushed either
        "sys.stdout.write('x' * 100_000 + 'end')\n"  # buffered, not flushed
        + body
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_the_program_skips_the_teardown_but_flushes_and_runs_atexit(tmp_path: Path) -> None:
    done = _leaving(tmp_path, "leave(3)\n")
    assert done.returncode == 3 and done.stdout.replace("native ", "") == "x" * 100_000 + "end"
    assert "native " in done.stdout
    assert (tmp_path / "atexit").exists() and "teardown" not in done.stderr
    message = _leaving(tmp_path, "leave('error: something')\n")
    assert message.returncode == 1 and message.stderr == "error: something\n"


def test_the_program_exits_the_ordinary_way_while_a_thread_still_works(tmp_path: Path) -> None:
    body = (
        f"def work():\n    time.sleep(0.3)\n    open({str(tmp_path / 'thread')!r}, 'w').close()\n"
        "threading.Thread(target=work).start()\n"
        "leave(None)\n"
    )
    done = _leaving(tmp_path, body)
    assert done.returncode == 0 and done.stdout.endswith("end")
    assert (tmp_path / "thread").exists() and (tmp_path / "atexit").exists() and "teardown" in done.stderr


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"], ["models", "list"]])
def test_a_reader_that_goes_away_ends_the_command_with_0(args: list[str]) -> None:
    """`ramtag models list | head -1` under `set -o pipefail`: rich's broken-pipe exit 1 failed the script."""
    process = subprocess.Popen([sys.executable, "-m", "ramtag", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, cwd=REPO)
    process.stdout.close()  # before the program writes: every write of its finds the pipe broken
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == b""
