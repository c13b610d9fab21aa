"""``ramtag models`` through CliRunner: data files from file:// URLs, weights from a stand-in Hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import huggingface_hub
import huggingface_hub.constants
import pytest
from typer.testing import CliRunner, Result

from ramtag.cli.app import for_arguments
from ramtag.model import download
from ramtag.model.registry import DATA_FILES, WEIGHTS

RAM_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "ram_data"
COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """``ramtag models ARGS`` as the command line runs it (the application of that command alone)."""
    return runner.invoke(for_arguments(["models"]), ["models", *args], env=env)


@pytest.fixture
def hub_cache(isolated_user_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """conftest's temporary caches; the Hub cache follows its HF_HOME (huggingface_hub reads it at import)."""
    hub = isolated_user_dirs / "hf" / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("RAMTAG_DATA_URL", f"{RAM_DATA.as_uri()}/{{filename}}")
    return hub


@pytest.fixture
def online(hub_cache: Path, ramplus_tiny: Any, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Network allowed, served by stand-ins: every release 'is' the tiny official RAM++ checkpoint."""
    monkeypatch.delenv("RAMTAG_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    content = ramplus_tiny.checkpoint.read_bytes()
    calls: list[dict[str, Any]] = []

    def hf_hub_download(repo_id: str, filename: str, **kwargs: Any) -> str:
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        folder = "spaces" if kwargs.get("repo_type") == "space" else "models"
        repo = hub_cache / f"{folder}--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
        path = repo / "snapshots" / COMMIT / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return str(path)

    def get_paths_info(_api: object, repo_id: str, paths: list[str], **kwargs: Any) -> list[Any]:
        lfs = SimpleNamespace(sha256=hashlib.sha256(content).hexdigest())
        return [SimpleNamespace(path=path, lfs=lfs) for path in paths]

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", get_paths_info)
    return calls


def _lines(output: str) -> dict[str, str]:
    return dict(line.split("\t") for line in output.splitlines())


def test_list_before_anything_is_downloaded(hub_cache: Path) -> None:
    result = invoke("list", env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in [*WEIGHTS, *DATA_FILES]:
        assert name in result.stdout
    assert result.stdout.count("not downloaded") == len(WEIGHTS) + len(DATA_FILES)
    assert WEIGHTS["ram_plus"].display in result.stdout


def test_list_json(hub_cache: Path) -> None:
    result = invoke("list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == [*WEIGHTS, *DATA_FILES]
    assert [row["kind"] for row in rows] == ["weights"] * len(WEIGHTS) + ["data"] * len(DATA_FILES)
    assert rows[0]["source"] == WEIGHTS["ram_plus"].display
    assert rows[-1]["source"] == (RAM_DATA / "ram_tag_list_threshold.txt").as_uri()
    assert all(row["path"] is None and row["size"] is None for row in rows)


def test_download_fetches_weights_and_data_then_list_shows_them(
    online: list[dict[str, Any]], ramplus_tiny: Any
) -> None:
    result = invoke("download")
    assert result.exit_code == 0, result.output
    paths = {name: Path(path) for name, path in _lines(result.stdout).items()}
    assert list(paths) == [*DATA_FILES, "ram_plus"]
    for name, entry in DATA_FILES.items():
        assert hashlib.sha256(paths[name].read_bytes()).hexdigest() == entry.sha256
    assert paths["ram_plus"].read_bytes() == ramplus_tiny.checkpoint.read_bytes()
    (call,) = online
    assert (call["repo_id"], call["filename"]) == (WEIGHTS["ram_plus"].repo_id, WEIGHTS["ram_plus"].filename)
    assert call["local_files_only"] is False
    assert "RAMTAG_OFFLINE=1" in result.stderr

    rows = {row["name"]: row for row in json.loads(invoke("list", "--json").stdout)}
    assert rows["ram_plus"]["path"] == str(paths["ram_plus"])
    assert not [row for row in rows.values() if row["kind"] == "converted"]  # nothing loaded yet
    assert rows["ram_plus"]["size"] == ramplus_tiny.checkpoint.stat().st_size
    assert rows["ram"]["path"] is None
    assert rows["tag_list"]["path"] == str(paths["tag_list"])


def test_download_all(online: list[dict[str, Any]]) -> None:
    result = invoke("download", "--all")
    assert result.exit_code == 0, result.output
    assert set(_lines(result.stdout)) == {*DATA_FILES, *WEIGHTS}
    assert [call["repo_type"] for call in online] == [WEIGHTS[name].repo_type for name in WEIGHTS]


@pytest.mark.parametrize(
    ("args", "message"),
    [(["ram", "ram_pluss"], "unknown model 'ram_pluss'"), (["ram", "--all"], "not both")],
)
def test_download_usage_errors_fetch_nothing(online: list[dict[str, Any]], args: list[str], message: str) -> None:
    result = invoke("download", *args)
    assert result.exit_code == 2
    assert message in result.stderr and result.stdout == ""
    assert online == [] and download.cached_data_file("tag_list") is None


def test_download_offline_with_nothing_cached_is_one_line(hub_cache: Path) -> None:
    result = invoke("download")  # conftest sets RAMTAG_OFFLINE and HF_HUB_OFFLINE
    assert result.exit_code == 2
    assert result.stderr.startswith("error: `ramtag models download` fetches files, but ramtag is offline")
    assert result.stderr.count("\n") == 1 and "HF_HUB_OFFLINE or RAMTAG_OFFLINE" in result.stderr
    assert "--tag-list" not in result.stderr  # not an option of this command
    assert str(hub_cache) in result.stderr


def test_download_that_fails_gives_advice_for_this_command(
    online: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not offline by choice, but out of reach: the advice is not a flag of another command, nor this very command.
    monkeypatch.setenv("RAMTAG_DATA_URL", f"{(tmp_path / 'nowhere').as_uri()}/{{filename}}")
    result = invoke("download")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith("error: cannot download ") and result.stderr.count("\n") == 1
    assert "--tag-list" not in result.stderr and "`ramtag models download`" not in result.stderr
    assert "point RAMTAG_DATA_URL at a mirror" in result.stderr and str(download.data_dir()) in result.stderr

    monkeypatch.setenv("RAMTAG_DATA_URL", f"{RAM_DATA.as_uri()}/{{filename}}")

    def unreachable(*args: Any, **kwargs: Any) -> str:
        raise OSError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    result = invoke("download")
    assert result.exit_code == 1
    error = result.stderr.splitlines()[-1]
    assert error.startswith("error: cannot download hf://") and "Name or service not known" in error
    assert "--checkpoint" not in error and "`ramtag models download" not in error
    assert "point HF_ENDPOINT at a mirror" in error


def test_verify_checkpoint_loads_the_official_fixture(hub_cache: Path, ramplus_tiny: Any) -> None:
    result = invoke("verify", "--checkpoint", str(ramplus_tiny.checkpoint))
    assert result.exit_code == 0, result.output
    assert hashlib.sha256(ramplus_tiny.checkpoint.read_bytes()).hexdigest() in result.stdout
    assert "ram_plus, 16 tags, 384x384 px" in result.stdout
    assert result.stdout.count("not downloaded yet (fetched at first use)") == len(DATA_FILES)  # not a failure
    assert "missing" not in result.stdout


def test_verify_downloaded_release(online: list[dict[str, Any]], ramplus_tiny: Any) -> None:
    assert invoke("download").exit_code == 0
    result = invoke("verify")
    sha = hashlib.sha256(ramplus_tiny.checkpoint.read_bytes()).hexdigest()
    assert f"ok       ram_plus     sha256 {sha}" in result.stdout
    assert "no reference" not in result.stdout  # compared with the sha256 the Hub listed
    for name in DATA_FILES:
        assert f"ok       {name:<12} sha256 {DATA_FILES[name].sha256}" in result.stdout
    assert "ram_plus, 16 tags" in result.stdout
    # The stand-in release is the 16-tag fixture: weights that do not fit the official tag list,
    # which every run would refuse, are a failure of verify too.
    assert result.exit_code == 1
    assert "holds 16 tags but the official tag list" in result.stderr and "has 4585" in " ".join(result.stderr.split())


def test_verify_finds_damaged_files(online: list[dict[str, Any]]) -> None:
    assert invoke("download").exit_code == 0
    download.cached_data_file("thresholds").write_text("0.5\n", encoding="utf-8")
    with open(download.cached_weights("ram_plus"), "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0" * 8)
    result = invoke("verify", "ram_plus")
    assert result.exit_code == 1
    assert "DAMAGED  thresholds   sha256" in result.stdout and "ok       tag_list " in result.stdout
    assert "DAMAGED  ram_plus     sha256" in result.stdout and "loads" not in result.stdout
    assert "verify failed: 2 problems" in result.stderr


def test_verify_names_what_to_delete_and_checks_the_converted_copies(
    online: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ramtag.model.cached import converted_dir
    from ramtag.model.load import load_model

    assert invoke("download").exit_code == 0
    weights = download.cached_weights("ram_plus")
    load_model(weights, num_tags=16)  # its converted copy, with its sha256 recorded
    (converted,) = converted_dir().glob("*.safetensors")
    assert "ok       converted    sha256" in invoke("verify", "ram_plus").stdout
    with open(converted, "r+b") as handle:
        handle.seek(converted.stat().st_size // 2)
        handle.write(b"\xff" * 64)
    with open(weights, "r+b") as handle:
        handle.seek(1000)
        handle.write(b"\0" * 8)
    result = invoke("verify", "ram_plus")
    assert result.exit_code == 1 and "DAMAGED  converted    sha256" in result.stdout
    said = " ".join(result.stderr.split())
    assert f"{converted} is damaged: delete it; it is made again from the .pth at the next run" in said
    assert f"{weights.resolve()} is damaged: delete it; then download it again" in said  # the blob, not the link
    monkeypatch.setenv("RAMTAG_OFFLINE", "1")  # offline the Hub cannot be asked, but the file was checked once
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: str(weights))  # the cache as it is
    with pytest.raises(download.ChecksumError, match="no longer the .* it had when downloaded"):
        download.weights_file("ram_plus")


def test_verify_rejects_a_checkpoint_of_the_other_kind(hub_cache: Path, ramplus_tiny: Any) -> None:
    result = invoke("verify", "ram", "--checkpoint", str(ramplus_tiny.checkpoint))
    assert result.exit_code == 1
    assert "is a ram_plus checkpoint, not ram" in result.stderr


def test_verify_reports_a_checkpoint_that_does_not_load(hub_cache: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    result = invoke("verify", "--checkpoint", str(bad))
    assert result.exit_code == 1
    assert "cannot load" in result.stderr and "bad.pth" in result.stderr


def test_verify_without_weights_fails(hub_cache: Path) -> None:
    result = invoke("verify")
    assert result.exit_code == 1
    assert "ram_plus is not downloaded" in result.stderr and "--checkpoint PATH" in result.stderr


def test_models_is_wired_into_the_main_app(hub_cache: Path) -> None:
    from ramtag.cli.app import app as main_app

    result = runner.invoke(main_app, ["models", "list", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["name"] for row in json.loads(result.stdout)] == [*WEIGHTS, *DATA_FILES]


def test_list_shows_the_converted_weights(hub_cache: Path, ramplus_tiny: Any) -> None:
    from ramtag.model.load import load_model

    _, info = load_model(ramplus_tiny.checkpoint, num_tags=16)  # as a run does: converted and cached
    rows = json.loads(invoke("list", "--json").stdout)
    [converted] = [row for row in rows if row["kind"] == "converted"]
    assert converted["size"] == Path(converted["path"]).stat().st_size > 0
    assert converted["source"] == f"converted from the checkpoint with sha256 {info.sha256}"
    text = invoke("list").stdout
    assert f"{converted['name']}  (converted, cached, " in text and "delete them to reclaim the space" in text


def test_download_benchmarks_fetches_every_label_file_and_the_text_encoder(
    online: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ramtag.describe import encoder
    from ramtag.model.registry import BENCHMARKS

    root = tmp_path / "mirror"  # the official repository's layout, as RAMTAG_DATA_URL may point at it
    (root / "ram").mkdir(parents=True)
    (root / "ram" / "data").symlink_to(RAM_DATA)
    (root / "datasets").mkdir()
    for folder in (RAM_DATA / "benchmarks").iterdir():
        (root / "datasets" / folder.name).symlink_to(folder)
    monkeypatch.setenv("RAMTAG_DATA_URL", root.as_uri())
    loaded: list[str] = []
    monkeypatch.setattr(encoder, "TextEncoder", lambda name: loaded.append(name))
    result = invoke("download", "--benchmarks")
    assert result.exit_code == 0, result.output
    paths = _lines(result.stdout)
    entries = [e for b in BENCHMARKS.values() for e in (b.taglist, b.annotations, b.descriptions) if e]
    for entry in entries:
        assert hashlib.sha256(Path(paths[entry.name]).read_bytes()).hexdigest() == entry.sha256
    assert "ram_plus" in paths and loaded == [encoder.DEFAULT_TEXT_ENCODER]
    assert "fetching the text encoder openai/clip-vit-base-patch16" in result.stderr


def test_download_text_encoder_alone_fetches_only_it(online: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """What the missing-encoder message tells a person to run: the encoder, not 3 GB of weights."""
    from ramtag.describe import encoder

    loaded: list[str] = []
    monkeypatch.setattr(encoder, "TextEncoder", lambda name: loaded.append(name))
    result = invoke("download", "--text-encoder")
    assert result.exit_code == 0, result.output
    assert list(_lines(result.stdout)) == [encoder.DEFAULT_TEXT_ENCODER] and loaded == [encoder.DEFAULT_TEXT_ENCODER]
    assert online == []  # no weights
    both = invoke("download", "ram_plus", "--text-encoder")
    assert both.exit_code == 0 and "ram_plus" in _lines(both.stdout) and len(loaded) == 2


def test_a_full_disk_while_downloading_says_so(online: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """It said: Python's warning from the Hub client, then to run it "on a connected machine"."""
    import errno
    import warnings

    def full(*args: object, **kwargs: object) -> str:
        warnings.warn("Not enough free disk space to download the file.", UserWarning)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", full)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(download.ResourceUnavailableError, match="no space left in .* point HF_HOME at a disk"):
            download.weights_file("ram_plus")
    assert [str(w.message) for w in said] == []
