"""A real ``ramtag serve`` on a loopback port, started as its own process, for the serve tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]


class Server:
    """``python -m ramtag serve --port 0 ARGS``: the port it printed, its process, its output."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, ready: bool = True) -> None:
        merged = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
                  "RAMTAG_OFFLINE": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ramtag", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=merged,
        )
        self.lines: list[str] = []
        self.url = self._listening()
        # Read on as it prints (a line per request): a full pipe would stop the server mid-test.
        self._reader = threading.Thread(target=self._read_on, daemon=True)
        self._reader.start()
        if ready:
            self.wait_ready()

    def _listening(self) -> str:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise AssertionError("the server stopped: " + "".join(self.lines))
            self.lines.append(line)
            found = re.search(r"listening on (http://\S+) ", line)
            if found:
                return found.group(1)
        raise AssertionError("the server did not say where it listens")

    def wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, "the server stopped while loading"
            time.sleep(0.1)
        raise AssertionError("the model did not load in time")

    def _read_on(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.append(line)

    def output(self) -> str:
        """Everything it printed, once it has stopped."""
        self._reader.join(timeout=60)
        return "".join(self.lines)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                self.process.kill()
