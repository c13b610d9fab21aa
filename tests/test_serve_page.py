"""The page at ``/`` in a real headless browser (Debian's chromium, driven over the DevTools
protocol): it loads, a fixture image is picked, and the tags it shows are those of ``ramtag run``."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ramtag.cli.app import app

from serving import Server

websockets = pytest.importorskip("websockets")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium here (.ci/run installs Debian's)")


class Page:
    """One browser tab over the DevTools protocol: send a command, get its result."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.ids = itertools.count(1)

    async def send(self, method: str, **params) -> dict:
        number = next(self.ids)
        await self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == number:
                assert "error" not in message, message
                return message.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")


def _browser(profile: Path, url: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", "--remote-debugging-port=0", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 60
    while not (port_file.exists() and port_file.read_text().strip()):
        assert process.poll() is None and time.monotonic() < deadline, "chromium did not start"
        time.sleep(0.1)
    return process, int(port_file.read_text().split()[0])


async def _pick_and_read(socket_url: str, image: Path) -> tuple[list[str], list[str]]:
    async with websockets.connect(socket_url, max_size=None) as socket:
        page = Page(socket)
        await page.send("Runtime.enable")
        deadline = time.monotonic() + 30
        while await page.evaluate("document.readyState") != "complete" or await page.evaluate(
            "document.getElementById('info').textContent.includes('tags')"
        ) is not True:
            assert time.monotonic() < deadline, "the page did not load the server's info"
            await asyncio.sleep(0.1)
        document = await page.send("DOM.getDocument")
        node = await page.send("DOM.querySelector", nodeId=document["root"]["nodeId"], selector="#pick")
        await page.send("DOM.setFileInputFiles", nodeId=node["nodeId"], files=[str(image)])
        deadline = time.monotonic() + 60
        while not await page.evaluate("document.querySelectorAll('.result').length"):
            assert time.monotonic() < deadline, "no result was shown"
            await asyncio.sleep(0.1)
        names = await page.evaluate(
            "[...document.querySelectorAll('.tag .name')].map(n => n.firstChild.textContent)")
        chinese = await page.evaluate("[...document.querySelectorAll('.tag .zh')].map(n => n.textContent)")
        return names, chinese


def test_the_page_tags_a_picked_image(ramplus_tiny, tmp_path: Path) -> None:
    zh = str(ramplus_tiny.root / "tags_chinese.txt")
    image = tmp_path / "photo.jpg"
    shutil.copyfile(ramplus_tiny.images / "demo2.jpg", image)
    out = tmp_path / "run.parquet"
    assert CliRunner().invoke(app, ["run", str(image), "--out", str(out), "--lang", "both", "--workers", "0",
                                    *ramplus_tiny.cli_args(), "--tag-list-zh", zh]).exit_code == 0
    import pandas as pd

    row = pd.read_parquet(out).iloc[0]
    running = Server([*ramplus_tiny.cli_args(), "--tag-list-zh", zh])
    browser = None
    try:
        browser, port = _browser(tmp_path / "profile", running.url + "/")
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        [tab] = [target for target in targets if target["type"] == "page"]
        names, chinese = asyncio.run(_pick_and_read(tab["webSocketDebuggerUrl"], image))
    finally:
        if browser is not None:
            browser.kill()
            browser.wait()
        assert running.stop() == 0
    assert names == list(row["tags"]) and names  # the tags, best first, as ramtag run gives them
    assert chinese == list(row["tags_zh"])
