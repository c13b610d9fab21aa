"""The first ten minutes: offline errors that list everything at once, no silent threshold loss,
describe without a key, and the small things a new user trips over (no test reaches the internet:
"unreachable" is a closed loopback port)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ramtag.cli.app import app
from ramtag.errors import RamtagWarning

from conftest import SHARED

runner = CliRunner()
OFFICIAL = SHARED / "ram_data"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the with block ends: nothing listens there


def ramtag(*args, **kwargs):
    result = runner.invoke(app, list(map(str, args)), **kwargs)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_offline_first_run_lists_every_missing_file_at_once(tmp_path: Path, isolated_user_dirs: Path) -> None:
    (tmp_path / "a.jpg").write_bytes((SHARED / "fixtures/official_ramplus_tiny/images/demo4.jpg").read_bytes())
    started = time.perf_counter()
    result = ramtag("run", tmp_path, "--out", tmp_path / "tags.parquet")
    assert time.perf_counter() - started < 5
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "error: ramtag is offline (HF_HUB_OFFLINE or RAMTAG_OFFLINE is set) and these files are not cached:"
    data = isolated_user_dirs / "ramtag" / "data"
    hub = isolated_user_dirs / "hf" / "hub" / "models--xinyu1205--recognize-anything-plus-model"
    assert lines[1].split() == ["weights", "ram_plus_swin_large_14m.pth", "(looked", "in", f"{hub};", "or", "pass",
                                "--checkpoint", "PATH)"]
    for line, (what, name, flag) in zip(lines[2:5], (("tag list", "ram_tag_list.txt", "--tag-list"),
                                                       ("Chinese tag list", "ram_tag_list_chinese.txt", "--tag-list-zh"),
                                                       ("thresholds", "ram_tag_list_threshold.txt", "--thresholds"))):
        assert line.strip().startswith(what) and f"  {name}  (looked in {data}/" in line and f"pass {flag} PATH)" in line
    assert "run `ramtag models download ram_plus`" in lines[5] and "set HF_HUB_OFFLINE=1" in lines[5]
    assert len(lines) == 6 and not (tmp_path / "tags.parquet").exists()


def test_a_missing_checkpoint_file_is_named_with_the_other_missing_files(
    tmp_path: Path, isolated_user_dirs: Path
) -> None:
    """load_tagger("nope.pth") offline listed the tag lists, then, once given, failed on the checkpoint."""
    from ramtag import load_tagger
    from ramtag.errors import ResourceUnavailableError

    with pytest.raises(ResourceUnavailableError) as raised:
        load_tagger(tmp_path / "nope.pth")
    lines = str(raised.value).splitlines()
    assert lines[1].split() == ["checkpoint", "nope.pth", "(looked", "in", f"{tmp_path.resolve()})"]
    assert lines[2].strip().startswith("tag list") and len(lines) == 6


def _online_at(port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online, the Hub and the tag lists' mirror both at 127.0.0.1:``port``, no proxy; a photo in ``tmp_path``."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("RAMTAG_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("RAMTAG_DATA_URL", f"http://127.0.0.1:{port}/mirror")
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    (tmp_path / "a.jpg").write_bytes((SHARED / "fixtures/official_ramplus_tiny/images/demo4.jpg").read_bytes())


def test_unreachable_hosts_fail_fast_without_retries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    _online_at(port, tmp_path, monkeypatch)
    started = time.perf_counter()
    result = ramtag("run", tmp_path / "a.jpg")
    assert time.perf_counter() - started < 5
    assert result.exit_code == 1
    first = result.stderr.splitlines()[0]
    assert first == (f"error: cannot download the files ramtag needs (127.0.0.1:{port} refused the connection), "
                     "and they are not cached:")
    assert "Retry" not in result.stderr and len(result.stderr.splitlines()) == 6


def test_a_host_that_takes_the_connection_and_never_answers_fails_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy or firewall that accepts and then says nothing: huggingface_hub's retries waited
    about 7 minutes before its own error, without the list of files and what to do."""
    import socket

    import ramtag.model.needed as needed

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the system completes each connection; nobody ever reads or answers
    port = silent.getsockname()[1]
    monkeypatch.setattr(needed, "ANSWER_SECONDS", 1.0)
    needed._probe.cache_clear()
    _online_at(port, tmp_path, monkeypatch)
    try:
        result = ramtag("run", tmp_path / "a.jpg")
    finally:
        silent.close()
        needed._probe.cache_clear()
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "error: cannot download the files ramtag needs (127.0.0.1 took the connection but did not answer within "
        "1 s), and they are not cached:")
    assert "Retry" not in result.stderr and "ramtag models download" in result.stderr


def official_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for name in ("ram_tag_list.txt", "ram_tag_list_chinese.txt", "ram_tag_list_threshold.txt"):
        shutil.copyfile(OFFICIAL / name, mirror / name)
    monkeypatch.setenv("RAMTAG_DATA_URL", mirror.as_uri() + "/{filename}")
    monkeypatch.delenv("RAMTAG_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    return mirror


def test_the_official_list_passed_as_a_file_keeps_its_thresholds(tmp_path: Path, monkeypatch) -> None:
    from ramtag.model.labels import read_thresholds
    from ramtag.vocabulary import load_vocabulary

    mine = tmp_path / "my copy of the tags.txt"
    shutil.copyfile(OFFICIAL / "ram_tag_list.txt", mine)
    official_mirror(tmp_path, monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RamtagWarning)
        vocabulary = load_vocabulary(tag_list=mine)
    expected = read_thresholds(OFFICIAL / "ram_tag_list_threshold.txt")
    assert list(vocabulary.thresholds) == pytest.approx(list(expected))
    assert len(set(vocabulary.thresholds)) > 1 and vocabulary.tags_zh is not None


def test_a_vocabulary_without_thresholds_is_warned_about(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    from ramtag.vocabulary import load_vocabulary

    with pytest.warns(RamtagWarning) as caught:
        vocabulary = load_vocabulary(tag_list=ramplus_tiny.tags)
    assert str(caught[0].message) == (
        f"{ramplus_tiny.tags} is not the official tag list: every tag uses the threshold 0.68; pass --thresholds "
        "FILE (the official ram_tag_list_threshold.txt for the official list) or --threshold T"
    )
    assert list(vocabulary.thresholds) == pytest.approx([0.68] * len(vocabulary))
    mine = tmp_path / "tags.txt"
    shutil.copyfile(OFFICIAL / "ram_tag_list.txt", mine)
    with pytest.warns(RamtagWarning, match="is the official tag list, but its per-tag thresholds are not available"):
        load_vocabulary(tag_list=mine)  # offline, nothing cached: said, not silent
    with warnings.catch_warnings():
        warnings.simplefilter("error", RamtagWarning)
        load_vocabulary(tag_list=ramplus_tiny.tags, threshold=0.5)  # one threshold asked for: nothing to say
    # On the command line the warning is one line.
    done = subprocess.run(
        [sys.executable, "-m", "ramtag", "run", str(ramplus_tiny.images / "demo4.jpg"), "--checkpoint",
         str(ramplus_tiny.checkpoint), "--tag-list", str(ramplus_tiny.tags), "-q"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.startswith(f"warning: {ramplus_tiny.tags} is not the official tag list") and done.stderr.count("\n") == 1


def test_describe_without_a_key_says_so_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    started = time.perf_counter()
    result = ramtag("describe", "cat wearing a hat")
    assert time.perf_counter() - started < 5
    assert result.exit_code == 2
    assert "no API key for https://api.openai.com/v1: none in --api-key" in result.stderr
    assert "$OPENAI_API_KEY" in result.stderr and "--llm none" in result.stderr and "11434" in result.stderr


def test_describe_gives_up_at_once_on_a_name_that_does_not_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    started = time.perf_counter()
    result = ramtag("describe", "cat", "--base-url", "http://llm.example/v1", "--api-key", "k" * 20)
    assert time.perf_counter() - started < 5
    assert result.exit_code == 1
    assert "cannot reach http://llm.example/v1: its name does not resolve" in result.stderr
    assert "--llm none" in result.stderr and "gave up" not in result.stderr


def test_out_folders_are_created_and_sizes_are_nullable_integers(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / "good.jpg")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    out = tmp_path / "results" / "2024" / "tags.parquet"
    result = ramtag("run", photos, "--out", out, *ramplus_tiny.cli_args())
    assert result.exit_code == 0, result.output
    summary, example = result.stderr.strip().splitlines()[-2:]
    assert summary.startswith("2 images: 1 tagged, 1 error in ") and " s to start, then " in summary
    assert example.startswith("e.g. broken.jpg: not an image")  # the bad file named, without -v
    frame = pd.read_parquet(out)
    assert str(frame["width"].dtype) == "Int32" and str(frame["height"].dtype) == "Int32"
    assert frame.set_index("path").loc["broken.jpg", "width"] is pd.NA
    again = ramtag("run", photos, "--out", out, "--keep-errors", *ramplus_tiny.cli_args())
    assert again.exit_code == 0
    assert again.stderr.strip().splitlines()[-1].startswith("nothing new to tag: 2 images found, all unchanged (")


def test_a_closed_pipe_ends_quietly(tmp_path: Path, ramplus_tiny) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for number in range(12):
        shutil.copyfile(ramplus_tiny.images / "demo4.jpg", photos / f"{number:02}.jpg")
    process = subprocess.Popen(
        [sys.executable, "-m", "ramtag", "run", str(photos), "--batch-size", "1", "-q", *ramplus_tiny.cli_args()],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )
    assert json.loads(process.stdout.readline())["path"] == "00.jpg"
    process.stdout.close()  # `| head -1`
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 0
    assert stderr == ""


def test_open_set_tags_without_a_reachable_hub_fail_fast(tmp_path: Path, ramplus_tiny, monkeypatch) -> None:
    import huggingface_hub.constants

    port = closed_port()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("RAMTAG_OFFLINE")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    started = time.perf_counter()
    result = ramtag("run", ramplus_tiny.images / "demo4.jpg", "--tags", "cat,hat", *ramplus_tiny.cli_args())
    assert time.perf_counter() - started < 10
    assert result.exit_code == 1
    assert result.stderr.startswith("error: the text encoder openai/clip-vit-base-patch16 is not cached (looked in ")
    assert f"127.0.0.1:{port} refused the connection" in result.stderr and "--text-encoder" in result.stderr
    assert "Retry" not in result.stderr


def test_models_list_keeps_addresses_whole_and_says_where_files_go(isolated_user_dirs: Path) -> None:
    from ramtag.model.download import data_url

    result = ramtag("models", "list", env={"COLUMNS": "60"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert f"  from  {data_url('thresholds')}" in lines  # whole, however narrow the terminal
    at = lines.index("thresholds  (data, not downloaded)")
    assert lines[at + 2].split()[0] == "into" and lines[at + 2].split()[1].startswith(str(isolated_user_dirs))


def test_eval_benchmark_offline_points_to_your_own_labels(tmp_path: Path) -> None:
    result = ramtag("eval", "--benchmark", "openimages_common_214", "--images", tmp_path)
    assert result.exit_code == 1
    assert "is not cached and ramtag is offline" in result.stderr
    assert "--gt FILE (and --gt-classes FILE for numbered labels)" in result.stderr


def test_verify_with_nothing_downloaded_says_what_failed(isolated_user_dirs: Path) -> None:
    result = ramtag("models", "verify")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "verify failed: the weights are not downloaded; 3 data files not downloaded yet (not a failure: fetched at first use)"
    )


def test_eval_benchmark_offline_names_every_file_it_lacks(tmp_path: Path) -> None:
    """One missing file at a time made an offline machine a round trip per file."""
    result = ramtag("eval", "--benchmark", "openimages_common_214", "--images", tmp_path)
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "openimages_common_214_ram_taglist.txt and " in result.stderr
    assert "openimages_common_214_ram_annots.txt" in result.stderr
    assert "ramtag models download --benchmarks" in result.stderr
