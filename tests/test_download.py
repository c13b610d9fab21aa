"""Data files from a local HTTP server, weights through a stand-in for ``hf_hub_download``."""

from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import os
import inspect
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import huggingface_hub
import huggingface_hub.constants
import pytest
from huggingface_hub.utils import LocalEntryNotFoundError, httpx

from ramtag import __version__
from ramtag.errors import ChecksumError, ResourceUnavailableError, UsageError
from ramtag.model import download
from ramtag.model.registry import DATA_FILES, OFFICIAL_COMMIT, WEIGHTS, WeightsSource

from conftest import REPO

RAM_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "ram_data"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# The real functions, to check what ramtag passes them against their signatures.
REAL_HF_HUB_DOWNLOAD = huggingface_hub.hf_hub_download
REAL_GET_PATHS_INFO = huggingface_hub.HfApi.get_paths_info
FLAGS = {"tag_list": "--tag-list", "tag_list_zh": "--tag-list-zh", "thresholds": "--thresholds"}


@pytest.fixture
def cache(isolated_user_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """conftest's temporary caches, but online, with no mirror and no proxy."""
    # huggingface_hub reads HF_HOME once, at import: follow conftest's HF_HOME by hand.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(isolated_user_dirs / "hf" / "hub"))
    for name in ("RAMTAG_OFFLINE", "HF_HUB_OFFLINE", "RAMTAG_DATA_URL", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return isolated_user_dirs / "ramtag"


@dataclass
class DataServer:
    root: Path
    base: str = ""
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, User-Agent)


@pytest.fixture
def server(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataServer]:
    """A copy of the shared data files served on 127.0.0.1, with RAMTAG_DATA_URL pointing at it."""
    root = tmp_path / "served"
    root.mkdir()
    for entry in DATA_FILES.values():
        shutil.copy(RAM_DATA / entry.filename, root / entry.filename)
    state = DataServer(root)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, self.headers.get("User-Agent", "")))
            super().do_GET()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("RAMTAG_DATA_URL", f"{state.base}/{{filename}}")
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- data files -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(DATA_FILES))
def test_data_file_is_downloaded_checked_and_cached(server: DataServer, cache: Path, name: str) -> None:
    entry = DATA_FILES[name]
    path = download.data_file(name)
    assert path == cache / "data" / OFFICIAL_COMMIT / entry.filename
    assert path.read_bytes() == (RAM_DATA / entry.filename).read_bytes()
    assert _sha256(path) == entry.sha256
    assert server.requests == [(f"/{entry.filename}", f"ramtag/{__version__}")]
    assert [p.name for p in path.parent.iterdir()] == [entry.filename]  # no temporary file left
    assert download.cached_data_file(name) == path

    assert download.data_file(name) == path
    assert len(server.requests) == 1  # the second call used the cache


def test_a_caller_can_say_what_to_do_instead(server: DataServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMTAG_OFFLINE", "1")
    with pytest.raises(ResourceUnavailableError) as caught:
        download.data_file("tag_list", instead="copy it by hand")
    assert str(caught.value).endswith(": copy it by hand") and "--tag-list" not in str(caught.value)


def test_corrupted_download_is_refused_and_not_cached(server: DataServer, cache: Path) -> None:
    with open(server.root / "ram_tag_list.txt", "ab") as handle:
        handle.write(b"one more tag\n")
    with pytest.raises(ChecksumError) as caught:
        download.data_file("tag_list")
    message = str(caught.value)
    assert f"{server.base}/ram_tag_list.txt" in message
    assert "\n" not in message
    assert download.cached_data_file("tag_list") is None
    folder = download.data_dir()
    assert not folder.exists() or list(folder.iterdir()) == []


@pytest.mark.parametrize("variable", ["RAMTAG_OFFLINE", "HF_HUB_OFFLINE"])
@pytest.mark.parametrize("name", list(DATA_FILES))
def test_offline_without_cache_names_the_flag(
    server: DataServer, monkeypatch: pytest.MonkeyPatch, name: str, variable: str
) -> None:
    monkeypatch.setenv(variable, "1")
    with pytest.raises(ResourceUnavailableError) as caught:
        download.data_file(name)
    message = str(caught.value)
    assert "\n" not in message
    assert "offline" in message and DATA_FILES[name].filename in message
    assert f"{FLAGS[name]} PATH" in message and "ramtag models download" in message
    assert server.requests == []


def test_cached_file_is_used_offline(server: DataServer, monkeypatch: pytest.MonkeyPatch) -> None:
    path = download.data_file("thresholds")
    monkeypatch.setenv("RAMTAG_OFFLINE", "1")
    assert download.data_file("thresholds") == path
    assert len(server.requests) == 1


def test_damaged_cache_is_refused_offline_and_replaced_online(
    server: DataServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = download.data_file("tag_list_zh")
    path.write_text("damaged\n", encoding="utf-8")
    monkeypatch.setenv("RAMTAG_OFFLINE", "1")
    with pytest.raises(ChecksumError, match="damaged.*--tag-list-zh PATH"):
        download.data_file("tag_list_zh")
    monkeypatch.delenv("RAMTAG_OFFLINE")
    assert download.data_file("tag_list_zh") == path
    assert _sha256(path) == DATA_FILES["tag_list_zh"].sha256
    assert len(server.requests) == 2


def test_http_error_is_one_line_with_url_and_alternative(server: DataServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMTAG_DATA_URL", f"{server.base}/nowhere/{{filename}}")
    with pytest.raises(ResourceUnavailableError) as caught:
        download.data_file("tag_list")
    message = str(caught.value)
    assert f"{server.base}/nowhere/ram_tag_list.txt" in message
    assert "HTTP 404" in message and "--tag-list PATH" in message and "\n" not in message


def test_unreachable_server_is_a_resource_error_without_credentials(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("RAMTAG_DATA_URL", f"http://user:s3cret@127.0.0.1:{port}/{{filename}}")
    with pytest.raises(ResourceUnavailableError) as caught:
        download.data_file("thresholds")
    message = str(caught.value)
    assert f"http://127.0.0.1:{port}/ram_tag_list_threshold.txt" in message
    assert "s3cret" not in message and "--thresholds PATH" in message and "\n" not in message


def test_data_url_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAMTAG_DATA_URL", raising=False)
    assert download.data_url("tag_list") == DATA_FILES["tag_list"].url
    assert OFFICIAL_COMMIT in download.data_url("tag_list")
    monkeypatch.setenv("RAMTAG_DATA_URL", "https://mirror.example/ram/")
    assert download.data_url("tag_list") == "https://mirror.example/ram/ram/data/ram_tag_list.txt"
    monkeypatch.setenv("RAMTAG_DATA_URL", "https://mirror.example/{commit}/{filename}")
    assert download.data_url("thresholds") == f"https://mirror.example/{OFFICIAL_COMMIT}/ram_tag_list_threshold.txt"
    for typo in ("https://me:s3cret@mirror.example/{file}", "https://mirror.example/{}", "https://mirror.example/{path",
                 "https://mirror.example/{path.x}", "https://mirror.example/{path[x]}"):
        monkeypatch.setenv("RAMTAG_DATA_URL", typo)  # one line naming the variable, never a traceback
        with pytest.raises(UsageError, match=r"RAMTAG_DATA_URL=.* is not a URL template .*\{filename\}") as caught:
            download.data_url("tag_list")
        assert "s3cret" not in str(caught.value)
    with pytest.raises(UsageError):
        download.data_url("labels")


def test_check_data_file_rehashes(server: DataServer) -> None:
    assert download.check_data_file("tag_list").path is None
    path = download.data_file("tag_list")
    assert download.check_data_file("tag_list").ok
    path.write_bytes(path.read_bytes()[:-1])
    check = download.check_data_file("tag_list")
    assert not check.ok and check.expected == DATA_FILES["tag_list"].sha256


# --- weights --------------------------------------------------------------------------------


def place_in_hub_cache(source: WeightsSource, content: bytes) -> Path:
    """Lay a file out as huggingface_hub does: refs/main -> commit, snapshots/<commit>/<file>."""
    folder = "spaces" if source.repo_type == "space" else "models"
    repo = Path(huggingface_hub.constants.HF_HUB_CACHE) / f"{folder}--{source.repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    path = repo / "snapshots" / COMMIT / source.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@dataclass
class FakeHub:
    """Stands in for the Hub: downloads into the cache layout and lists an LFS sha256."""

    content: bytes = b"released weights"
    listed_sha256: str | None = None
    error: BaseException | None = None
    downloads: list[dict[str, Any]] = field(default_factory=list)
    queries: list[dict[str, Any]] = field(default_factory=list)

    def hf_hub_download(self, repo_id: str, filename: str, **kwargs: Any) -> str:
        self.downloads.append({"repo_id": repo_id, "filename": filename, **kwargs})
        if self.error is not None:
            raise self.error
        source = next(s for s in WEIGHTS.values() if s.repo_id == repo_id and s.filename == filename)
        existing = download.cached_weights(source.name)
        if existing is not None:
            return str(existing)
        if kwargs.get("local_files_only"):
            raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache")
        return str(place_in_hub_cache(source, self.content))

    def get_paths_info(self, repo_id: str, paths: list[str], **kwargs: Any) -> list[Any]:
        self.queries.append({"repo_id": repo_id, "paths": paths, **kwargs})
        sha = hashlib.sha256(self.content).hexdigest() if self.listed_sha256 is None else self.listed_sha256
        lfs = SimpleNamespace(sha256=sha, size=len(self.content)) if sha else None
        return [SimpleNamespace(path=path, lfs=lfs) for path in paths]


@pytest.fixture
def hub(cache: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.hf_hub_download)
    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", fake.get_paths_info, raising=True)
    return fake


def test_weights_are_downloaded_verified_once_and_remembered(hub: FakeHub) -> None:
    source = WEIGHTS["ram_plus"]
    path = download.weights_file("ram_plus")
    assert path.read_bytes() == hub.content
    (call,) = hub.downloads
    assert (call["repo_id"], call["filename"], call["repo_type"]) == (source.repo_id, source.filename, "model")
    assert call["local_files_only"] is False
    (query,) = hub.queries
    assert query["paths"] == [source.filename] and query["revision"] == COMMIT and query["repo_type"] == "model"

    inspect.signature(REAL_HF_HUB_DOWNLOAD).bind(**call)
    inspect.signature(REAL_GET_PATHS_INFO).bind(huggingface_hub.HfApi(), **query)

    assert download.weights_file("ram_plus") == path
    assert len(hub.downloads) == 2 and len(hub.queries) == 1  # verified hash remembered
    assert download.cached_weights("ram_plus") == path
    assert download.check_weights("ram_plus").ok


def test_weights_from_a_space_use_its_repo_type(hub: FakeHub) -> None:
    path = download.weights_file("ram")
    assert hub.downloads[0]["repo_type"] == "space" and hub.queries[0]["repo_type"] == "space"
    assert download.cached_weights("ram") == path
    assert download.cached_weights("ram_plus") is None


def test_weights_not_matching_the_hub_raise(hub: FakeHub) -> None:
    hub.listed_sha256 = "0" * 64
    with pytest.raises(ChecksumError) as caught:
        download.weights_file("ram_plus")
    message = str(caught.value)
    assert "delete" in message and "ramtag models download ram_plus" in message and "\n" not in message
    with pytest.raises(ChecksumError):  # not remembered as verified
        download.weights_file("ram_plus")


def test_weights_without_listed_sha256_are_accepted(hub: FakeHub) -> None:
    hub.listed_sha256 = ""
    path = download.weights_file("ram_plus", progress=False)
    assert path.is_file()
    download.weights_file("ram_plus")
    assert len(hub.queries) == 2  # nothing verified, so nothing remembered


def test_damaged_weights_are_found_by_check(hub: FakeHub) -> None:
    path = download.weights_file("ram_plus")
    with open(path, "ab") as handle:
        handle.write(b"!")
    check = download.check_weights("ram_plus")
    assert not check.ok and check.expected == hashlib.sha256(hub.content).hexdigest()


def test_offline_weights_come_from_the_cache_only(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ResourceUnavailableError) as caught:
        download.weights_file("ram_plus")
    message = str(caught.value)
    assert "--checkpoint PATH" in message and "ramtag models download ram_plus" in message
    assert "offline" in message and "\n" not in message
    assert hub.downloads[0]["local_files_only"] is True

    path = place_in_hub_cache(WEIGHTS["ram_plus"], hub.content)
    assert download.weights_file("ram_plus") == path
    assert hub.queries == []  # no Hub query offline


def _as_blob(path: Path, content: bytes, *, link: bool = True) -> None:
    """The snapshot entry as huggingface_hub lays it out: a link to ``blobs/<sha256>`` (or, after
    ``cp -rL``, a copy of it beside the blob)."""
    blob = path.parents[2] / "blobs" / hashlib.sha256(content).hexdigest()
    blob.parent.mkdir(exist_ok=True)
    blob.write_bytes(path.read_bytes())
    if link:
        path.unlink()
        path.symlink_to(os.path.relpath(blob, path.parent))


@pytest.mark.parametrize("link", [True, False], ids=["linked", "copied"])
def test_weights_in_a_copied_cache_are_checked_against_their_blob_name(
    hub: FakeHub, monkeypatch: pytest.MonkeyPatch, link: bool
) -> None:
    """A cache copied to an offline machine has no record of what was verified (it is keyed by
    the original path): a bad copy was used, and `models verify` called it ok."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = place_in_hub_cache(WEIGHTS["ram_plus"], hub.content)
    _as_blob(path, hub.content, link=link)
    assert download.weights_file("ram_plus") == path and download.check_weights("ram_plus").ok
    damaged = bytearray(hub.content)
    damaged[3] ^= 1
    (path.resolve() if link else path).write_bytes(bytes(damaged))
    if not link:
        (path.parents[2] / "blobs" / hashlib.sha256(hub.content).hexdigest()).write_bytes(bytes(damaged))
    with pytest.raises(ChecksumError, match="not the .* its name in the Hugging Face cache says: the file is damaged"):
        download.weights_file("ram_plus")
    check = download.check_weights("ram_plus")
    assert not check.ok and check.expected == hashlib.sha256(hub.content).hexdigest()
    assert hub.queries == []


def test_weights_whose_blob_name_matches_need_no_hub_query(hub: FakeHub) -> None:
    path = place_in_hub_cache(WEIGHTS["ram_plus"], hub.content)
    _as_blob(path, hub.content)
    assert download.weights_file("ram_plus") == path and hub.queries == []


@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        OSError("Consistency check failed: file should be of size 3\nThis is usually due to network issues"),
        LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub"),
    ],
)
def test_hub_failures_become_one_line(hub: FakeHub, error: BaseException) -> None:
    hub.error = error
    with pytest.raises(ResourceUnavailableError) as caught:
        download.weights_file("ram_plus")
    message = str(caught.value)
    assert message.startswith(f"cannot download {WEIGHTS['ram_plus'].display}: ")
    assert str(error).splitlines()[0].rstrip(".") in message
    assert "--checkpoint PATH" in message and "\n" not in message


def test_a_cache_that_cannot_be_written_is_said_as_such(hub: FakeHub) -> None:
    """A read-only HF_HOME read as a network failure: 'copy the cache from a connected machine'."""
    hub.error = OSError(errno.EROFS, "Read-only file system")
    with pytest.raises(ResourceUnavailableError) as caught:
        download.weights_file("ram_plus")
    message = str(caught.value)
    assert "cannot write in the Hugging Face cache" in message and "(Read-only file system)" in message
    assert "point HF_HOME at a folder you can write to" in message and "run the command again" not in message
    hub.error = httpx.ConnectError("peer closed connection without sending complete message body")
    with pytest.raises(ResourceUnavailableError, match="; run the command again to retry, or pass --checkpoint"):
        download.weights_file("ram_plus")


def test_quiet_download_passes_a_silent_progress_bar(hub: FakeHub) -> None:
    download.weights_file("ram_plus", progress=False)
    bar = hub.downloads[0]["tqdm_class"](total=10)
    assert bar.disable
    download.weights_file("ram_plus")
    assert hub.downloads[1]["tqdm_class"] is None


def test_unknown_model_is_a_usage_error(cache: Path) -> None:
    with pytest.raises(UsageError, match="ram_plus, ram"):
        download.weights_file("ram_pluss")


def test_real_hub_client_offline_reads_only_the_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAMTAG_OFFLINE", "1")
    with pytest.raises(ResourceUnavailableError, match="not in the Hugging Face cache"):
        download.weights_file("ram")
    path = place_in_hub_cache(WEIGHTS["ram"], b"cached weights")
    assert download.weights_file("ram", progress=False) == path


def test_ramtag_offline_keeps_the_hugging_face_libraries_offline_too() -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: under RAMTAG_OFFLINE=1 alone it still
    made its own requests at start-up (a few seconds' wait on every run of an air-gapped machine)."""
    env = {key: value for key, value in os.environ.items() if key != "HF_HUB_OFFLINE"}
    code = "import ramtag, huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"
    for flag, expected in (("1", "True"), ("", "False")):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**env, "RAMTAG_OFFLINE": flag}, cwd=REPO)
        assert done.stdout.strip() == expected
