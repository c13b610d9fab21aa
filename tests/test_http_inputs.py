"""Images behind http:// URLs, from a loopback server: each failure is its own row, said in words."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("aiohttp")  # fsspec's HTTP filesystem

from ramtag.cli.app import app  # noqa: E402
import ramtag.inputs.fs as fs  # noqa: E402


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 120, 40)).save(buffer, "JPEG")
    return buffer.getvalue()


@contextlib.contextmanager
def served(handler: Any, server_class: type[ThreadingHTTPServer] = ThreadingHTTPServer) -> Iterator[str]:
    """A loopback HTTP server with ``handler`` while the block runs: its base URL."""
    httpd = server_class(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[str]:
    release = threading.Event()
    photo = _jpeg()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/silent.jpg":
                release.wait(30)  # accepts the request, then never answers
                return
            code = {"/photo.jpg": 200, "/forbidden.jpg": 403, "/broken.jpg": 500}.get(self.path, 404)
            body = photo if code == 200 else b""
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    try:
        with served(Handler) as base:
            yield base
    finally:
        release.set()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_each_failed_url_is_a_row_that_says_why(server: str, tmp_path: Path, ramplus_tiny, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fs, "HTTP_READ_TIMEOUT", 1.0)  # a silent server costs a second, not minutes
    urls = [f"{server}/photo.jpg", f"{server}/forbidden.jpg", f"{server}/broken.jpg", f"{server}/gone.jpg",
            f"{server}/silent.jpg", f"http://127.0.0.1:{_closed_port()}/x.jpg"]
    listed = tmp_path / "urls.txt"
    listed.write_text("\n".join(urls) + "\n", encoding="utf-8")
    out = tmp_path / "tags.jsonl"
    result = CliRunner().invoke(app, ["run", "--files-from", str(listed), "--out", str(out), "--workers", "0",
                                      *ramplus_tiny.cli_args()])
    assert result.exit_code == 0, result.output
    rows = {row["path"]: row for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert list(rows) == urls
    errors = [rows[url]["error"] for url in urls]
    assert errors[0] is None and rows[urls[0]]["width"] == 32
    assert errors[1] == "the server answered HTTP 403 Forbidden"
    assert errors[2] == "the server answered HTTP 500 Internal Server Error"
    assert errors[3] == "not found there (HTTP 404)"
    assert "timed out" in errors[4]
    port = urls[5].split(":")[2].split("/")[0]
    assert errors[5] == f"cannot connect: 127.0.0.1:{port} refused the connection (no server there?)"


def test_a_url_on_the_command_line_that_fails_says_how(server: str, ramplus_tiny) -> None:
    runner = CliRunner()
    refused = runner.invoke(app, ["run", f"{server}/forbidden.jpg", *ramplus_tiny.cli_args()])
    assert refused.exit_code == 2 and "the server answered HTTP 403 Forbidden" in refused.stderr
    missing = runner.invoke(app, ["run", f"{server}/gone.jpg", *ramplus_tiny.cli_args()])
    assert missing.exit_code == 2 and f"input not found: {server}/gone.jpg" in missing.stderr


def _shard(count: int) -> bytes:
    import tarfile

    buffer = io.BytesIO()
    photo = _jpeg()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for number in range(count):
            info = tarfile.TarInfo(f"{number:09d}.jpg")
            info.size = len(photo)
            archive.addfile(info, io.BytesIO(photo))
    return buffer.getvalue()


def test_a_connection_dropped_mid_shard_is_that_shards_row(tmp_path: Path, ramplus_tiny) -> None:
    """aiohttp's payload error is no OSError: one dropped connection ended a run of many shards,
    with a traceback, and what it had tagged was lost."""
    shard = _shard(40)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            code = 500 if self.path == "/00002.tar" else 200
            self.send_response(code)
            self.send_header("Content-Length", str(len(shard) if code == 200 else 0))
            self.end_headers()
            if self.command == "GET" and code == 200:
                self.wfile.write(shard[: len(shard) // 2] if self.path == "/00001.tar" else shard)

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    with served(Handler) as base:
        out = tmp_path / "tags.jsonl"
        result = CliRunner().invoke(app, ["run", base + "/{00000..00002}.tar", "--out", str(out), "--workers", "0",
                                          *ramplus_tiny.cli_args()])
    assert result.exit_code == 0, result.output
    rows = {row["path"]: row for row in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert sum(key.startswith("00000.tar/") and rows[key]["error"] is None for key in rows) == 40
    assert rows["00001.tar"]["error"].startswith(f"{base}/00001.tar: cannot read this tar shard: the connection "
                                                 "closed before the whole file arrived")  # not aiohttp's "400"
    assert "run again to retry it" in rows["00001.tar"]["error"]
    assert rows["00002.tar"]["error"] == (f"{base}/00002.tar: cannot read this tar shard: the server answered "
                                          "HTTP 500 Internal Server Error; run again to retry it")


def test_a_rerun_downloads_only_shards_whose_version_changed(tmp_path: Path, ramplus_tiny) -> None:
    """The server's ETag (or Last-Modified) with the size stands for a shard's version; a server
    that sends neither gets every shard downloaded again, as before."""
    shard = _shard(3)
    etags = {"/00000.tar": '"a1"', "/00001.tar": '"b1"', "/00002.tar": None}
    downloads: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(shard)))
            if etags.get(self.path):
                self.send_header("ETag", etags[self.path])
            self.end_headers()
            if self.command == "GET":
                downloads.append(self.path)
                self.wfile.write(shard)

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    out = tmp_path / "tags.parquet"
    with served(Handler) as base:
        args = ["run", base + "/{00000..00002}.tar", "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()]
        results = []
        for etag in ('"b1"', '"b1"', '"b2"'):
            etags["/00001.tar"] = etag
            downloads.clear()
            results.append(CliRunner().invoke(app, args))
            assert results[-1].exit_code == 0, results[-1].output
            results[-1] = (results[-1].stderr, sorted(set(downloads)))
    assert results[0][1] == ["/00000.tar", "/00001.tar", "/00002.tar"]
    assert results[1][1] == ["/00002.tar"] and "9 images found, all unchanged" in results[1][0], results[1][0]
    assert results[2][1] == ["/00001.tar", "/00002.tar"] and "9 images found, all unchanged" in results[2][0]


def test_ctrl_c_while_a_shard_stalls_stops_at_once_and_keeps_what_was_tagged(tmp_path: Path, ramplus_tiny) -> None:
    """The first Ctrl-C waited out the stalled read (a minute per connection), then wrote the
    shard's timeout as its error row; with nothing being tagged, it now stops there and then."""
    shard = _shard(3)
    asked, release = threading.Event(), threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(shard)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if self.path == "/00001.tar" and not release.is_set():
                self.wfile.write(shard[:700])  # a member's header and some of its data, then silence
                self.wfile.flush()
                asked.set()
                release.wait(30)
                return
            self.wfile.write(shard)

        do_HEAD = do_GET

        def log_message(self, *args: object) -> None:
            pass

    def press_ctrl_c() -> None:
        if asked.wait(120):
            time.sleep(0.5)  # the run is inside the read by now
            os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "tags.parquet"
    with served(Handler) as base:
        args = ["run", base + "/{00000..00001}.tar", "--out", str(out), "--workers", "0", "--batch-size", "2",
                *ramplus_tiny.cli_args()]
        threading.Thread(target=press_ctrl_c, daemon=True).start()
        try:
            stopped = CliRunner().invoke(app, args)
        finally:
            release.set()
        assert stopped.exit_code == 130, stopped.output
        assert "stopping without waiting for the next image: what was read is tagged and saved" in stopped.stderr
        assert "interrupted: 3 images saved" in stopped.stderr  # the whole first shard, the last of it in a partial batch
        saved = pd.concat(map(pd.read_parquet, sorted((tmp_path / "tags.parquet.parts").glob("*.parquet"))))
        assert sorted(saved["path"]) == [f"00000.tar/00000000{n}" for n in range(3)]
        assert saved["error"].isna().all()  # no timeout row for the stalled shard
        finished = CliRunner().invoke(app, args)
    assert finished.exit_code == 0, finished.output
    rows = pd.read_parquet(out)
    assert len(rows) == 6 and rows["path"].is_unique and rows["error"].isna().all()


def test_an_http_folder_url_is_refused_in_words(server: str, ramplus_tiny) -> None:
    """It was read as one file: '1 image: 1 error, not an image Pillow can read'."""
    result = CliRunner().invoke(app, ["run", server + "/shards/", *ramplus_tiny.cli_args()])
    assert result.exit_code == 2 and "a folder over HTTP cannot be listed" in result.stderr
    assert server + "/shards/{00000..00099}.tar" in result.stderr


def test_a_server_without_range_requests_serves_large_shards_and_images(tmp_path: Path, ramplus_tiny) -> None:
    """python -m http.server answers no Range: past fsspec's first 5 MB block the run stopped with a
    ValueError traceback. Shards and images are read as one streamed GET."""
    import functools
    import os as _os
    from http.server import SimpleHTTPRequestHandler

    import pandas as pd

    from test_shards import write_shard

    noise = _os.urandom(6 << 20)  # a 'photo' of 6 MB that is no image: an error row, read whole
    write_shard(tmp_path / "www" / "00000.tar", [("000.jpg", _jpeg()), ("001.jpg", noise), ("002.jpg", _jpeg())])
    (tmp_path / "www" / "big.jpg").write_bytes(_jpeg() + noise)  # JPEG data then junk: decodes
    import numpy as np

    random = np.random.default_rng(0).integers(0, 256, (900, 1200, 3), dtype=np.uint8)
    Image.fromarray(random).save(tmp_path / "www" / "noise.png")  # 3 MB no compression shrinks: read whole

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that closed early (a HEAD's, a stream read far enough): not this test's output

    out = tmp_path / "tags.parquet"
    with served(functools.partial(Quiet, directory=str(tmp_path / "www")), Server) as base:
        result = CliRunner().invoke(app, ["run", f"{base}/00000.tar", f"{base}/big.jpg", f"{base}/noise.png",
                                          "--out", str(out), "--workers", "0", *ramplus_tiny.cli_args()])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    rows = pd.read_parquet(out).set_index("path")
    assert rows.loc["00000.tar/002", "error"] is None or pd.isna(rows.loc["00000.tar/002", "error"])
    assert "not an image" in rows.loc["00000.tar/001", "error"] and len(rows) == 5
    assert pd.isna(rows.loc[f"{base}/noise.png", "error"]) and rows.loc[f"{base}/noise.png", "width"] == 1200
