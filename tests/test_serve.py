"""``ramtag serve`` as a real server on a loopback port (tiny fixture model) with a real HTTP client:
the same tags as ``ramtag run``, PhotoPrism's shapes, bad images, limits, tokens and SIGTERM."""

from __future__ import annotations

import base64
import contextlib
import io
import shutil
import socket
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from ramtag.cli.app import app

from serving import Server

# The server batches images as they arrive, `ramtag run` by --batch-size: fp32 rounds differently in
# other batch shapes (1e-6 apart here, more on CPUs with other kernels), so equal means within 1e-5.
CLOSE = 1e-5
IMAGES = ["demo2.jpg", "demo3.jpg", "demo4.jpg", "synth_cmyk.jpg", "synth_gray.png", "synth_palette.gif",
          "synth_rgba.png", "synth_tiny_17x9.jpg"]


@pytest.fixture(scope="module")
def server(ramplus_tiny):
    running = Server([*ramplus_tiny.cli_args(), "--tag-list-zh", str(ramplus_tiny.root / "tags_chinese.txt"),
                      "--max-body-mb", "12", "--batch-size", "4"])
    yield running
    assert running.stop() == 0


@pytest.fixture(scope="module")
def run_rows(ramplus_tiny, tmp_path_factory) -> pd.DataFrame:
    """What ``ramtag run`` writes for the same images."""
    folder = tmp_path_factory.mktemp("photos")
    for name in IMAGES:
        shutil.copyfile(ramplus_tiny.images / name, folder / name)
    out = folder.parent / "run.parquet"
    result = CliRunner().invoke(app, ["run", str(folder), "--out", str(out), "--workers", "0", "--lang", "both",
                                      "--all-scores", *ramplus_tiny.cli_args(),
                                      "--tag-list-zh", str(ramplus_tiny.root / "tags_chinese.txt")])
    assert result.exit_code == 0, result.output
    return pd.read_parquet(out).set_index("path")


def _same_as_run(answer: dict, row: pd.Series) -> None:
    assert answer["error"] is None and (answer["width"], answer["height"]) == (row["width"], row["height"])
    assert answer["tags"] == list(row["tags"]) and answer["tags_zh"] == list(row["tags_zh"])
    np.testing.assert_allclose(answer["scores"], row["scores"], rtol=0, atol=CLOSE)
    np.testing.assert_allclose(answer["all_scores"], row["all_scores"], rtol=0, atol=CLOSE)


def test_files_and_json_give_the_rows_of_ramtag_run(server, ramplus_tiny, run_rows) -> None:
    files = [("files", (name, (ramplus_tiny.images / name).read_bytes())) for name in IMAGES]
    response = httpx.post(server.url + "/v1/tag", files=files, data={"lang": "both", "all_scores": "true"}, timeout=120)
    assert response.status_code == 200, response.text
    answers = response.json()["results"]
    assert [answer["path"] for answer in answers] == IMAGES  # one per image, in order
    for answer in answers:
        _same_as_run(answer, run_rows.loc[answer["path"]])
    encoded = [base64.b64encode((ramplus_tiny.images / name).read_bytes()).decode() for name in IMAGES[:2]]
    data_url = "data:image/png;base64," + base64.b64encode((ramplus_tiny.images / "synth_rgba.png").read_bytes()).decode()
    body = {"images": [*encoded, data_url], "lang": "both", "all_scores": True}
    response = httpx.post(server.url + "/v1/tag", json=body, timeout=120)
    assert response.status_code == 200, response.text
    for answer, name in zip(response.json()["results"], [*IMAGES[:2], "synth_rgba.png"]):
        _same_as_run(answer, run_rows.loc[name])
    picked = httpx.post(server.url + "/v1/tag", json={"images": encoded[:1], "top_k": 2, "threshold": 0.1}).json()
    scores = run_rows.loc[IMAGES[0], "all_scores"]
    assert picked["results"][0]["scores"] == pytest.approx(sorted(scores[scores > 0.1], reverse=True)[:2], abs=1e-6)


def test_a_photoprism_request_gets_what_photoprism_parses(server, ramplus_tiny, run_rows) -> None:
    """Field by field as PhotoPrism's ``vision.ApiResponse`` / ``LabelResult`` types read them."""
    image = (ramplus_tiny.images / "demo2.jpg").read_bytes()
    request = {"id": "3487da77-2f0c-4d6c-a0b1-31fa0f5ee2a6", "model": "ramtag", "version": "latest",
               "images": ["data:image/jpeg;base64," + base64.b64encode(image).decode()]}
    response = httpx.post(server.url + "/api/v1/vision/labels", json=request, timeout=60)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "code", "model", "result"} and body["id"] == request["id"] and body["code"] == 200
    model = body["model"]
    assert model["type"] == "labels" and isinstance(model["name"], str) and isinstance(model["version"], str)
    assert isinstance(model["resolution"], int) and model["resolution"] == 384
    labels = body["result"]["labels"]
    assert [label["name"] for label in labels] == list(run_rows.loc["demo2.jpg", "tags"])
    for label, score in zip(labels, run_rows.loc["demo2.jpg", "scores"]):
        assert set(label) <= {"name", "source", "priority", "confidence", "topicality", "categories"}
        assert label["source"] == "image" and isinstance(label["priority"], int)
        assert isinstance(label["confidence"], float) and 0 < label["confidence"] <= 1
        assert label["confidence"] == pytest.approx(score, abs=1e-6) and label["topicality"] == label["confidence"]
    empty = httpx.post(server.url + "/api/v1/vision/labels", json={"id": "abc-1", "images": []}, timeout=30)
    assert empty.status_code == 400 and empty.json()["id"] == "abc-1" and empty.json()["code"] == 400
    bad = httpx.post(server.url + "/api/v1/vision/labels", content=b"{not json", timeout=30)
    assert bad.status_code == 400 and set(bad.json()) == {"id", "code", "error"} and bad.json()["code"] == 400


def _bomb() -> bytes:
    """A tiny PNG whose header claims 40,000 x 40,000 pixels."""
    data = io.BytesIO()
    Image.new("RGB", (1, 1)).save(data, "PNG")
    png = bytearray(data.getvalue())
    header = struct.pack(">II", 40_000, 40_000) + bytes(png[24:29])
    png[16:29] = header
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(png)


def test_bad_images_get_their_error_and_the_others_are_tagged(server, ramplus_tiny, run_rows) -> None:
    good = (ramplus_tiny.images / "demo3.jpg").read_bytes()
    files = [("files", ("cut.jpg", good[: len(good) // 3])), ("files", ("demo3.jpg", good)),
             ("files", ("notes.jpg", b"this is not an image")), ("files", ("bomb.png", _bomb()))]
    response = httpx.post(server.url + "/v1/tag", files=files, timeout=60)
    assert response.status_code == 200
    cut, fine, text, bomb = response.json()["results"]
    assert fine["error"] is None and fine["tags"] == list(run_rows.loc["demo3.jpg", "tags"])
    assert cut["error"] and text["error"] and "too large" in bomb["error"] and "decompression" in bomb["error"]
    assert all(answer["tags"] == [] and answer["width"] is None for answer in (cut, text, bomb))
    too_big = httpx.post(server.url + "/v1/tag", files=[("files", ("big.jpg", b"\xff" * (13 << 20)))], timeout=60)
    assert too_big.status_code == 413 and "--max-body-mb" in too_big.json()["error"]
    assert httpx.post(server.url + "/v1/tag", json={"images": []}).status_code == 400
    assert httpx.post(server.url + "/v1/tag", json={"images": ["https://example.invalid/a.jpg"]}).json()[
        "results"][0]["error"].endswith("(start it with --allow-urls)")


def ramplus_tags() -> list[str]:
    from conftest import FIXTURES

    return (FIXTURES / "official_ramplus_tiny" / "tags.txt").read_text(encoding="utf-8").split("\n")[:16]


def test_health_info_metrics_and_the_page(server) -> None:
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    info = httpx.get(server.url + "/v1/info").json()
    assert info["model_kind"] == "ram_plus" and info["vocabulary_size"] == 16 and len(info["checkpoint_sha256"]) == 64
    assert info["precision"] == "fp32" and info["device"] == "cpu" and info["chinese_names"] is True
    assert info["tags"] == ramplus_tags()  # what all_scores' numbers are the scores of
    metrics = httpx.get(server.url + "/metrics").text
    assert 'ramtag_requests_total{endpoint="/healthz",code="200"}' in metrics
    assert "ramtag_batches_total" in metrics and "ramtag_request_seconds_bucket" in metrics
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "<script>" in page.text and "http" not in page.text.split("<script>")[1][:0]
    assert "src=\"http" not in page.text and "href=\"http" not in page.text  # no external assets


def test_a_token_is_required_once_set_and_never_printed(ramplus_tiny) -> None:
    secret = "s3cret-token-value"
    running = Server(ramplus_tiny.cli_args(), env={"RAMTAG_TOKEN": secret}, ready=False)
    try:
        early = httpx.get(running.url + "/healthz", timeout=5).status_code
        assert early in (200, 503)  # open: for probes
        running.wait_ready()
        counted = httpx.get(running.url + "/metrics", headers={"Authorization": "Bearer " + secret}).text
        if early == 503:  # counted from the start, not only once the model was loaded
            assert 'ramtag_requests_total{endpoint="/healthz",code="503"}' in counted
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer " + secret[:-1]}):
            refused = httpx.get(running.url + "/v1/info", headers=headers)
            assert refused.status_code == 401 and secret not in refused.text
        assert httpx.post(running.url + "/v1/tag", json={"images": []}).status_code == 401
        assert httpx.get(running.url + "/v1/info", headers={"Authorization": "Bearer " + secret}).status_code == 200
        assert httpx.get(running.url + "/v1/info", headers={"X-Ramtag-Token": secret}).status_code == 200
    finally:
        assert running.stop() == 0
    said = running.output()
    assert secret not in said
    # The request log: a line per request, refusals included (what a PhotoPrism admin looks for).
    assert "127.0.0.1 GET /v1/info 401 " in said and "127.0.0.1 POST /v1/tag 401 " in said
    assert "127.0.0.1 GET /v1/info 200 " in said and "Bearer" not in said


def test_sigterm_lets_the_request_in_flight_finish(ramplus_tiny) -> None:
    running = Server([*ramplus_tiny.cli_args(), "--batch-size", "1"])
    image = (ramplus_tiny.images / "demo2.jpg").read_bytes()
    answer: dict = {}

    def ask() -> None:
        files = [("files", (f"{n}.jpg", image)) for n in range(12)]
        answer["response"] = httpx.post(running.url + "/v1/tag", files=files, timeout=120)

    asking = threading.Thread(target=ask)
    asking.start()
    deadline = 200
    while deadline and "ramtag_queue_depth 0" in httpx.get(running.url + "/metrics").text:
        deadline -= 1  # until the request is admitted
        threading.Event().wait(0.02)
    code = running.stop()
    asking.join()
    assert answer["response"].status_code == 200
    assert len(answer["response"].json()["results"]) == 12 and code == 0
    assert "stopping: answering the 1 request in flight first (at most 120 s); a second Ctrl-C or SIGTERM stops at once" in (
        running.output())


def test_a_second_ctrl_c_stops_at_once_in_one_line(ramplus_tiny) -> None:
    """It printed a traceback per request cancelled, answered them 500, and exited 0."""
    import signal

    running = Server([*ramplus_tiny.cli_args(), "--batch-size", "1"])
    image = (ramplus_tiny.images / "demo2.jpg").read_bytes()
    asking = threading.Thread(target=lambda: httpx.post(
        running.url + "/v1/tag", files=[("files", (f"{n}.jpg", image)) for n in range(30)], timeout=120))
    asking.start()
    while "ramtag_queue_depth 0" in httpx.get(running.url + "/metrics").text:
        threading.Event().wait(0.02)  # until the request is admitted
    running.process.send_signal(signal.SIGINT)
    threading.Event().wait(0.5)
    running.process.send_signal(signal.SIGINT)
    code = running.process.wait(timeout=60)
    with contextlib.suppress(httpx.HTTPError):
        asking.join()
    said = running.output()
    assert code == 128 + signal.SIGINT and "Traceback" not in said, said
    assert said.rstrip().endswith("stopped at once: 1 request in flight not answered"), said


def test_an_ipv6_wildcard_takes_ipv4_too() -> None:
    import socket

    from ramtag.cli import serve

    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        sockets = serve._listen("::", 0)
    except Exception as error:  # noqa: BLE001 - a kernel without IPv6
        pytest.skip(f"cannot listen on :: here ({error})")
    try:
        sockets[0].listen()
        port = sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # refused before: IPV6_V6ONLY was set on every IPv6 socket
    finally:
        for sock in sockets:
            sock.close()


def test_a_full_queue_answers_503_with_retry_after(ramplus_tiny) -> None:
    running = Server([*ramplus_tiny.cli_args(), "--batch-size", "1", "--queue", "2"])
    image = (ramplus_tiny.images / "demo2.jpg").read_bytes()
    codes: list[int] = []
    retry: list[str | None] = []

    def ask() -> None:
        response = httpx.post(running.url + "/v1/tag", files=[("files", ("a.jpg", image)), ("files", ("b.jpg", image))],
                              timeout=120)
        codes.append(response.status_code)
        retry.append(response.headers.get("retry-after"))

    try:
        threads = [threading.Thread(target=ask) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        assert running.stop() == 0
    assert 200 in codes and 503 in codes and set(codes) <= {200, 503}
    assert all(value == "1" for code, value in zip(codes, retry) if code == 503)


def test_a_public_address_needs_a_token() -> None:
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env={"RAMTAG_TOKEN": ""})
    assert result.exit_code == 2
    assert "--host 0.0.0.0 lets other machines in: give --token" in result.stderr
    for token in ("   ", "pässwörd", "two words"):  # accepted, then never matched from curl or Go
        refused = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"], env={"RAMTAG_TOKEN": token})
        assert refused.exit_code == 2 and "--token must be printable ASCII without spaces" in refused.stderr


def test_a_server_on_loopback_with_a_token_answers_any_host_name(ramplus_tiny) -> None:
    """Behind a reverse proxy that forwards the Host header: the token stands against DNS rebinding."""
    running = Server(ramplus_tiny.cli_args(), env={"RAMTAG_TOKEN": "proxy-token"})
    try:
        headers = {"Host": "photos.example.org", "Authorization": "Bearer proxy-token"}
        assert httpx.get(running.url + "/v1/info", headers=headers).status_code == 200
        assert httpx.get(running.url + "/v1/info", headers={"Host": "photos.example.org"}).status_code == 401
    finally:
        assert running.stop() == 0


def test_too_many_requests_at_once_get_ramtags_503_logged_and_counted(ramplus_tiny) -> None:
    """uvicorn's own limit answered text/plain without Retry-After, unlogged and uncounted."""
    running = Server([*ramplus_tiny.cli_args(), "--batch-size", "1", "--queue", "1"])
    image = (ramplus_tiny.images / "demo2.jpg").read_bytes()
    answers: list[httpx.Response] = []

    def ask() -> None:
        answers.append(httpx.post(running.url + "/v1/tag", files=[("files", ("a.jpg", image))], timeout=120))

    try:
        threads = [threading.Thread(target=ask) for _ in range(90)]  # past 64 in flight at once
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        metrics = httpx.get(running.url + "/metrics").text
    finally:
        assert running.stop() == 0
    refused = [answer for answer in answers if answer.status_code == 503]
    assert refused and all(answer.headers.get("retry-after") == "1" and "busy" in answer.json()["error"]
                           for answer in refused)
    assert f'ramtag_requests_total{{endpoint="/v1/tag",code="503"}} {len(refused)}' in metrics
    assert running.output().count("POST /v1/tag 503") == len(refused)
    assert "Exceeded concurrency limit" not in running.output()


def test_the_body_limit_is_checked_before_the_whole_body_is_read(server) -> None:
    def chunks():
        for _ in range(40):
            yield b"\x00" * (1 << 20)

    response = httpx.post(server.url + "/v1/tag", content=chunks(), headers={"content-type": "application/json"},
                          timeout=60)
    assert response.status_code == 413


def test_a_client_hanging_up_mid_upload_is_one_log_line(server) -> None:
    """A phone dropping off Wi-Fi mid-upload printed a 70-line traceback per request."""
    address = httpx.URL(server.url)
    for path, kind, start in [("/v1/tag", "multipart/form-data; boundary=x", b"--x\r\n"),
                              ("/api/v1/vision/labels", "application/json", b'{"id": ')]:
        with socket.create_connection((address.host, address.port)) as client:
            client.sendall(f"POST {path} HTTP/1.1\r\nHost: {address.host}\r\nContent-Type: {kind}\r\n"
                           f"Content-Length: 100000\r\n\r\n".encode() + start)
            time.sleep(0.3)
    deadline = time.monotonic() + 30
    while "".join(server.lines).count("499") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    printed = "".join(server.lines)
    assert "POST /v1/tag 499" in printed and "POST /api/v1/vision/labels 499" in printed
    assert "the client closed the connection" in printed and "Traceback" not in printed
    metrics = httpx.get(server.url + "/metrics").text
    assert 'endpoint="/v1/tag",code="499"} 1' in metrics
    assert httpx.get(server.url + "/healthz").status_code == 200  # and it goes on answering


def test_an_image_path_that_does_not_exist_fails_at_start(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--checkpoint", str(tmp_path / "missing.pth")])
    assert result.exit_code == 2 and "--checkpoint" in result.stderr and "not found" in result.stderr


def test_requests_for_another_host_name_and_odd_bodies_are_refused(server) -> None:
    """On loopback, a page elsewhere cannot reach the server by DNS rebinding (Host is checked), nor
    send a form-encoded or text body; unknown paths do not grow /metrics."""
    rebound = httpx.get(server.url + "/v1/info", headers={"Host": "attacker.example:8000"})
    assert rebound.status_code == 421
    plain = httpx.post(server.url + "/v1/tag", content=b'{"images": []}', headers={"content-type": "text/plain"})
    assert plain.status_code == 400 and "Content-Type" in plain.json()["error"]
    httpx.get(server.url + "/no-such-%22path")
    assert "no-such" not in httpx.get(server.url + "/metrics").text
    listed = httpx.post(server.url + "/api/v1/vision/labels", json={"id": "1", "images": "data:image/png;base64,xx"})
    assert listed.status_code == 400 and listed.json()["code"] == 400
    missing = httpx.get(server.url + "/no-such-path")  # FastAPI's own refusals: the same body as ramtag's
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    assert httpx.get(server.url + "/v1/tag").status_code == 405


def test_misspelt_options_and_misnamed_fields_are_refused_in_words(server, ramplus_tiny) -> None:
    photo = (ramplus_tiny.images / "demo4.jpg").read_bytes()
    encoded = base64.b64encode(photo).decode()
    topk = httpx.post(server.url + "/v1/tag", json={"images": [encoded], "topk": 3}, timeout=60)
    assert topk.status_code == 400
    assert topk.json()["error"] == "unknown option 'topk'; the options are threshold, top_k, lang, all_scores"
    assert httpx.post(server.url + "/v1/tag?top_k=2&verbose=1", files={"files": photo}).status_code == 400
    boolean = httpx.post(server.url + "/v1/tag", json={"images": [encoded], "threshold": True}, timeout=60)
    assert boolean.status_code == 400 and "threshold must be a number" in boolean.json()["error"]
    for wrong, said in [({"top_k": 2.9}, "top_k a whole number"), ({"top_k": "2.9"}, "top_k a whole number"),
                        ({"all_scores": "nope"}, "all_scores must be true or false")]:
        refused = httpx.post(server.url + "/v1/tag", json={"images": [encoded], **wrong}, timeout=60)
        assert refused.status_code == 400 and said in refused.json()["error"], wrong  # was cut to 2, or taken as no
    fine = httpx.post(server.url + "/v1/tag", data={"top_k": " 2", "all_scores": "0"}, files={"files": photo}, timeout=60)
    assert fine.status_code == 200 and len(fine.json()["results"][0]["tags"]) <= 2
    assert "all_scores" not in fine.json()["results"][0] or fine.json()["results"][0]["all_scores"] is None
    for accepted in ({"top_k": 2.0, "all_scores": 1}, {"all_scores": None, "top_k": None}, {"all_scores": True}):
        answer = httpx.post(server.url + "/v1/tag", json={"images": [encoded], **accepted}, timeout=60)
        assert answer.status_code == 200, (accepted, answer.text)  # what JSON clients write
        assert (answer.json()["results"][0].get("all_scores") is not None) == bool(accepted["all_scores"])
    single = httpx.post(server.url + "/v1/tag", files={"file": ("a.jpg", photo)}, timeout=60)
    assert single.status_code == 400 and "images go in the field 'files'" in single.json()["error"]
    good = httpx.post(server.url + "/v1/tag?top_k=2", files={"files": ("a.jpg", photo)}, timeout=60)
    assert good.status_code == 200 and len(good.json()["results"][0]["tags"]) <= 2


def test_image_urls_are_fetched_only_when_allowed_and_only_over_http(ramplus_tiny, tmp_path) -> None:
    import http.server
    import socketserver

    image = (ramplus_tiny.images / "demo4.jpg").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if self.path == "/elsewhere":
                self.send_response(302)
                self.send_header("Location", "file:///etc/passwd")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.end_headers()
            self.wfile.write(image)

        def log_message(self, *args) -> None:
            pass

    with socketserver.TCPServer(("127.0.0.1", 0), Handler) as files:
        threading.Thread(target=files.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{files.server_address[1]}"
        running = Server([*ramplus_tiny.cli_args(), "--allow-urls"])
        try:
            answers = httpx.post(running.url + "/v1/tag", json={"images": [base + "/a.jpg", base + "/elsewhere",
                                                                           "file:///etc/passwd"]}, timeout=60).json()
        finally:
            assert running.stop() == 0
            files.shutdown()
    fetched, redirected, local = answers["results"]
    assert fetched["error"] is None and (fetched["width"], fetched["height"]) == Image.open(io.BytesIO(image)).size
    assert redirected["error"].startswith("cannot fetch the image URL") and redirected["width"] is None
    assert "only http(s) URLs" in local["error"]



def test_only_tags_are_checked_before_the_server_starts(ramplus_tiny) -> None:
    result = CliRunner().invoke(app, ["serve", "--only-tags", " , "])
    assert result.exit_code == 2 and "--only-tags ' , ' names no tag" in result.stderr
    misspelt = CliRunner().invoke(app, ["serve", "--only-tags", "cat,cta", "--port", "0", *ramplus_tiny.cli_args()])
    assert misspelt.exit_code == 2 and "'cta'" in misspelt.stderr and "listening" not in misspelt.stderr
    assert "--tags" not in misspelt.stderr  # serve has no --tags to suggest


def test_a_port_in_use_is_one_line_before_the_model_loads(ramplus_tiny) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = CliRunner().invoke(app, ["serve", "--port", port, *ramplus_tiny.cli_args()])
    assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert result.stderr.strip().endswith("; pass another --port (0 picks a free one)")


def test_listening_passes_over_a_missing_family_and_names_a_foreign_address(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import socket

    from ramtag.cli import serve

    real = socket.socket

    def without_ipv6(family: int = socket.AF_INET, *args, **kwargs):  # a kernel with IPv6 turned off
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        return real(family, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(socket, "socket", without_ipv6)
        sockets = serve._listen("", 0)  # every address: IPv4's, IPv6's passed over
    try:
        assert sockets and {sock.family for sock in sockets} == {socket.AF_INET}
    finally:
        for sock in sockets:
            sock.close()


def test_an_address_of_another_machine_is_one_line() -> None:
    from ramtag.cli import serve
    from ramtag.errors import RamtagError

    with pytest.raises(RamtagError) as refused:
        for sock in serve._listen("192.0.2.1", 0):  # TEST-NET-1: bound only where non-local binds are allowed
            sock.close()
            pytest.skip("this machine allows binding addresses it does not have (ip_nonlocal_bind)")
    assert str(refused.value).startswith("cannot listen on 192.0.2.1:0: ")
    assert str(refused.value).endswith("; --host must be an address of this machine")


def test_without_the_serve_extras_it_says_how_to_install_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "uvicorn" else find_spec(name, *a))
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "error: ramtag serve needs uvicorn: pip install 'ramtag[serve]'"
