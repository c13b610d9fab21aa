"""Any OpenAI-compatible chat-completions endpoint: OpenAI, Ollama, vLLM, llama.cpp, LM Studio.

The endpoint is configuration (base URL, model, key), not a code path. Requests go through the
standard library, so no client package is needed. What servers differ in is handled here:
``n > 1`` may be refused (HTTP 400/422) or silently ignored (fewer choices come back); either way the
endpoint is marked and the remaining answers are asked for one call at a time. 429 and 5xx are
retried with exponential backoff, honouring ``Retry-After``.
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPException

from .errors import LLMError
from .keys import ENV_VAR, Secret, default_key_file, redact
from .prompts import MAX_TOKENS, TEMPERATURE

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
_RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: ``retries`` more attempts after the first, waits doubling from ``initial_s``."""

    retries: int = 5
    initial_s: float = 1.0
    max_s: float = 30.0

    def wait(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), _MAX_RETRY_AFTER_S)
        base = min(self.initial_s * 2**attempt, self.max_s)
        return base * (1.0 + 0.25 * random.random())  # jitter spreads concurrent retries


def normalise_base_url(url: str) -> str:
    """``http://host/v1`` whether the user gave that, a trailing slash, or the full path."""
    url = url.strip().rstrip("/")
    for suffix in ("/chat/completions", "/completions"):
        if url.endswith(suffix):
            url = url[: -len(suffix)]
    return url


class ChatEndpoint:
    """Asks one model at one endpoint; safe to call from several threads."""

    max_concurrency: int | None = None  # no limit of its own: --concurrency decides

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        *,
        api_key: Secret | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.model_name = model
        self._key = api_key
        self.timeout_s = timeout_s
        self.retry = retry
        self.supports_n: bool | None = None  # unknown until the first reply
        self.requests = 0
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """What answers are cached under: the endpoint, not who paid for them."""
        return self.base_url

    def complete(self, prompt: str, n: int) -> list[str]:
        """Up to ``n`` sampled answers to ``prompt`` (fewer when the server ignores ``n``)."""
        if n > 1 and self.supports_n is not False:
            try:
                answers = self._ask(prompt, n)
            except _Rejected:
                self.supports_n = False
            else:
                self.supports_n = len(answers) >= n
                return answers
        try:
            return self._ask(prompt, None)
        except _Rejected as exc:
            raise LLMError(exc.message) from None

    def _ask(self, prompt: str, n: int | None) -> list[str]:
        body: dict = {
            "model": self.model_name,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": TEMPERATURE,
            "max_tokens": MAX_TOKENS,
        }
        if n is not None:
            body["n"] = n
        reply = self._post(body)
        try:
            choices = reply["choices"]
            return [(choice["message"].get("content") or "").strip() for choice in choices]
        except (KeyError, TypeError, AttributeError):
            raise LLMError(
                f"{self.base_url}: the reply is not a chat completion (no choices[].message); "
                "is --base-url an OpenAI-compatible /v1 endpoint?"
            ) from None

    def _post(self, body: dict) -> dict:
        url = f"{self.base_url}/chat/completions"
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key.reveal()}"
        attempt = 0
        while True:
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            with self._lock:
                self.requests += 1
            retry_after: float | None = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    raw = response.read()
                try:
                    return json.loads(raw)
                except ValueError:
                    raise LLMError(
                        f"{self.base_url}: the reply is not JSON; is --base-url an OpenAI-compatible /v1 endpoint?"
                    ) from None
            except urllib.error.HTTPError as exc:
                status = exc.code
                detail = self._detail(exc)
                exc.close()
                if status not in _RETRY_STATUS:
                    raise self._refusal(status, detail, body) from None
                retry_after = _seconds(exc.headers.get("Retry-After") if exc.headers else None)
                problem = f"HTTP {status}{': ' + detail if detail else ''}"
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, ConnectionRefusedError):
                    raise LLMError(f"cannot reach {self.base_url}: connection refused; is the server running?") from None
                if isinstance(reason, socket.gaierror):  # no such host, or no network: waiting will not help
                    raise LLMError(
                        f"cannot reach {self.base_url}: its name does not resolve ({reason.strerror or reason}); "
                        "offline? --llm none describes with ramtag's templates, no network needed"
                    ) from None
                problem = f"cannot reach the server ({reason})"
            except (TimeoutError, ConnectionError, HTTPException, OSError) as exc:
                problem = f"no reply within {self.timeout_s:g} s" if isinstance(exc, TimeoutError) else (
                    f"connection failed ({type(exc).__name__})"
                )
            if attempt >= self.retry.retries:
                raise LLMError(
                    f"{self.base_url}: gave up after {attempt + 1} attempt{'s' if attempt else ''}: "
                    f"{redact(problem, self._key)}; "
                    "answers received so far are cached, so running again resumes"
                )
            time.sleep(self.retry.wait(attempt, retry_after))
            attempt += 1

    def _detail(self, exc: urllib.error.HTTPError) -> str:
        """The server's own error message, short and with the key scrubbed out."""
        try:
            raw = exc.read(4096).decode("utf-8", "replace")
        except (OSError, HTTPException):
            return ""
        try:
            message = json.loads(raw)["error"]
            message = message.get("message", "") if isinstance(message, dict) else str(message)
        except (ValueError, KeyError, TypeError, AttributeError):
            message = raw
        message = " ".join(str(message).split())
        return redact(message, self._key)[:300]

    def _refusal(self, status: int, detail: str, body: dict) -> Exception:
        said = f" ({detail})" if detail else ""
        if status in (400, 422) and "n" in body:
            return _Rejected(f"HTTP {status}{said}")
        if status == 401 or status == 403:
            how = (
                "the key was refused" if self._key is not None
                else f"no API key was given: pass --api-key, store it in {default_key_file()} "
                f"(chmod 600) or set {ENV_VAR}"
            )
            return LLMError(f"{self.base_url}: HTTP {status}{said}: {how}")
        if status == 404:
            return LLMError(
                f"{self.base_url}: HTTP 404{said}: check --base-url (it should end in /v1) and --model {self.model_name!r}"
            )
        return _Rejected(f"{self.base_url}: HTTP {status}{said}")


class _Rejected(Exception):
    """A request refused as malformed: maybe only ``n`` was the problem."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
