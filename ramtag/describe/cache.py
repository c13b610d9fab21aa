"""Answers already paid for, kept across runs: re-running costs nothing, an interrupted run resumes.

One JSON Lines file; each line adds answers under a key made from (endpoint, model, prompt, tag).
Lines are appended and flushed as answers arrive, so a crash loses at most the request in flight;
a torn last line is skipped on reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

from ..paths import cache_dir


def default_cache_file() -> Path:
    return cache_dir() / "describe" / "answers.jsonl"


def answer_key(endpoint: str, model: str, prompt: str, tag: str) -> str:
    return hashlib.sha256(json.dumps([endpoint, model, prompt, tag]).encode("utf-8")).hexdigest()


class AnswerCache:
    """Thread-safe store of answers by key; ``add`` is durable when it returns."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_cache_file()
        self._lock = threading.Lock()
        self._answers: dict[str, list[str]] = {}
        self._torn = False
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError):
            return  # an unreadable cache only costs requests
        self._torn = bool(text) and not text.endswith("\n")  # cut in the middle of a line: end it first
        for line in text.splitlines():
            try:
                entry = json.loads(line)
                key, answers = entry["key"], entry["answers"]
            except (ValueError, KeyError, TypeError):
                continue
            if isinstance(key, str) and isinstance(answers, list):
                # (empty answers, which an older ramtag kept, are no descriptions)
                self._answers.setdefault(key, []).extend(str(a) for a in answers if str(a).strip())

    def get(self, key: str) -> list[str]:
        with self._lock:
            return list(self._answers.get(key, ()))

    def add(self, key: str, answers: list[str]) -> None:
        line = json.dumps({"key": key, "answers": answers}, ensure_ascii=False) + "\n"
        with self._lock:
            if self._torn:
                line, self._torn = "\n" + line, False
            self._answers.setdefault(key, []).extend(answers)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(line)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError:
                pass  # an unwritable cache only costs requests next time
