"""What ``ramtag serve`` does with images, without HTTP: read, decode, batch, score, answer.

``Service`` holds the loaded tagger. A request's images (``Incoming``: bytes, a data URL, base64, or
an http(s) URL when ``--allow-urls``) are read and decoded on a thread pool with the same decoder and
limits as ``ramtag run`` (the decompression-bomb guard included), then scored through the
``Batcher``. Each image gets its own answer: the fields of a row of ``ramtag run`` (``path``,
``tags``, ``scores``, ``tags_zh``, ``width``, ``height``, ``error``, ``all_scores``), an error for a
bad image never failing the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import RamtagError, UsageError
from ..inputs.refs import MAX_PIXELS, max_file_bytes
from .batcher import Batcher
from .metrics import Metrics

if TYPE_CHECKING:
    from ..tagger import Tagger

_DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*?(?P<b64>;base64)?,", re.ASCII)
_EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/gif": ".gif",
               "image/tiff": ".tif", "image/heic": ".heic", "image/avif": ".avif", "image/bmp": ".bmp",
               "image/x-adobe-dng": ".dng"}


class _HttpOnly(urllib.request.HTTPRedirectHandler):
    """Redirects are followed to http(s) URLs only (never ftp: or file:)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        if not newurl.lower().startswith(("http://", "https://")):
            raise urllib.error.URLError(f"redirected to a URL that is not http(s): {newurl.split(':', 1)[0]}:")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


# http and https only, no proxy settings taken from the environment, redirects to http(s) only.
_OPENER = urllib.request.OpenerDirector()
for _handler in (urllib.request.HTTPHandler(), urllib.request.HTTPSHandler(), _HttpOnly(),
                 urllib.request.HTTPErrorProcessor(), urllib.request.HTTPDefaultErrorHandler()):
    _OPENER.add_handler(_handler)


class BadRequest(RamtagError):
    """A request ramtag cannot answer (not an image's fault): 400, with this message."""


@dataclass(frozen=True)
class Limits:
    """What one request may ask: images per request, pixels per image, URLs and their limits."""

    max_images: int = 64
    max_pixels: int | None = MAX_PIXELS
    allow_urls: bool = False
    url_seconds: float = 10.0  # for a whole download
    url_bytes: int = 64 << 20

    @property
    def max_file(self) -> int | None:
        return max_file_bytes(self.max_pixels)


@dataclass(frozen=True)
class Incoming:
    """One image of a request: its bytes, or a text (a data URL, base64, an http(s) URL)."""

    name: str
    data: bytes | None = field(default=None, repr=False)
    text: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Options:
    """The per-request choices (what ``ramtag run`` takes as options)."""

    threshold: float | None = None
    top_k: int | None = None
    lang: str = "en"
    all_scores: bool = False

    def check(self, chinese: bool) -> None:
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise BadRequest(f"threshold {self.threshold}: give a number from 0 to 1")
        if self.top_k is not None and self.top_k < 1:
            raise BadRequest("top_k must be at least 1")
        if self.lang not in ("en", "zh", "both"):
            raise BadRequest(f"lang must be en, zh or both, not {self.lang!r}")
        if self.lang != "en" and not chinese:
            raise BadRequest(f"lang {self.lang}: this server's vocabulary has no Chinese names (start it with --tag-list-zh)")


class Service:
    """The model, loaded once, behind a batcher; ``tag`` answers one request's images."""

    def __init__(self, tagger: Tagger, *, batch_size: int, max_wait: float, capacity: int, limits: Limits,
                 raw_decode: str = "auto", decoders: int = 2, metrics: Metrics | None = None) -> None:
        from ..inputs.raw import RawOptions

        self.tagger = tagger
        self.limits = limits
        self.raw = RawOptions(raw_decode, tagger.config.image_size)
        self.metrics = metrics or Metrics()  # the server's, counting since it started listening
        self.batcher = Batcher(tagger.scores, batch_size=batch_size, max_wait=max_wait, capacity=capacity,
                               metrics=self.metrics)
        self._decoders = ThreadPoolExecutor(max_workers=decoders, thread_name_prefix="ramtag-decode")
        self._fetchers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ramtag-fetch")

    async def start(self) -> None:
        self.batcher.start()

    async def stop(self) -> None:
        await self.batcher.stop()
        self._decoders.shutdown(wait=False, cancel_futures=True)
        self._fetchers.shutdown(wait=False, cancel_futures=True)

    async def tag(self, images: list[Incoming], options: Options) -> list[dict[str, Any]]:
        """One answer per image, in order (``Full`` when there is no room for them now)."""
        options.check(self.tagger.vocabulary.tags_zh is not None)
        if not images:
            raise BadRequest("no images in the request")
        if len(images) > self.limits.max_images:
            raise BadRequest(f"{len(images)} images in one request; at most {self.limits.max_images} (--max-images)")
        self.batcher.admit(len(images))
        return list(await asyncio.gather(*(self._one(image, options) for image in images)))

    async def _one(self, image: Incoming, options: Options) -> dict[str, Any]:
        """One image's answer; its place in the queue is given back when it is answered."""
        try:
            return await self._answered(image, options)
        finally:
            self.batcher.release(1)

    async def _answered(self, image: Incoming, options: Options) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            text = (image.text or "").strip()
            if image.data is None and text.startswith(("http://", "https://")):  # its own threads: slow hosts
                image = Incoming(image.name, await loop.run_in_executor(self._fetchers, self._fetch, text))
            pixels, width, height = await loop.run_in_executor(self._decoders, self._decode, image)
        except RamtagError as error:
            self.metrics.image(False)
            return _failed(image.name, str(error), options)
        except Exception as error:  # noqa: BLE001 - as in ramtag run: a bad image is its own error
            self.metrics.image(False)
            return _failed(image.name, f"cannot use this image ({type(error).__name__}: {error})", options)
        try:
            scores = await self.batcher.scores(pixels)
        except Exception as error:  # noqa: BLE001 - a failed batch is an error for its images only
            self.metrics.image(False)
            return _failed(image.name, f"the model failed on this image's batch ({type(error).__name__}: {error})", options)
        self.metrics.image(True)
        return self._answer(image.name, scores, width, height, options)

    def _decode(self, image: Incoming) -> tuple[Any, int, int]:
        from ..inputs.decode import decode_bytes, original_size
        from ..model.transform import preprocess

        name, data = self._bytes(image)
        decoded = decode_bytes(data, name=name, max_pixels=self.limits.max_pixels, raw=self.raw)
        width, height = original_size(decoded)
        return preprocess(decoded, self.tagger.config), width, height

    def _bytes(self, image: Incoming) -> tuple[str, bytes]:
        """The file name (its extension says how to decode) and the bytes of one image."""
        from ..inputs import ImageDecodeError

        limit = self.limits.max_file
        if image.data is not None:
            data, name = image.data, image.name
        else:
            text = (image.text or "").strip()
            if "://" in text[:16]:
                raise ImageDecodeError("only http(s) URLs, data: URLs or base64 are read")
            else:
                name, data = _inline(text, image.name)
        if limit is not None and len(data) > limit:
            raise ImageDecodeError(f"file too large: {len(data):,} bytes is more than any image within --max-pixels")
        return name, data

    def _fetch(self, url: str) -> bytes:
        """An http(s) URL's bytes (redirects to http(s) only; no proxies from the environment),
        within ``url_seconds`` in all and ``url_bytes``."""
        from ..inputs import ImageDecodeError

        if not self.limits.allow_urls:
            raise ImageDecodeError("image URLs are not fetched by this server (start it with --allow-urls)")
        deadline = time.monotonic() + self.limits.url_seconds
        chunks, size = [], 0
        try:
            with _OPENER.open(url, timeout=self.limits.url_seconds) as response:
                while chunk := response.read(1 << 16):
                    size += len(chunk)
                    if size > self.limits.url_bytes:
                        raise ImageDecodeError(f"the image URL sends more than {self.limits.url_bytes:,} bytes")
                    if time.monotonic() > deadline:
                        raise ImageDecodeError(f"the image URL took more than {self.limits.url_seconds:g} s")
                    chunks.append(chunk)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            raise ImageDecodeError(f"cannot fetch the image URL ({reason})") from None
        return b"".join(chunks)

    def _answer(self, name: str, scores: np.ndarray, width: int, height: int, options: Options) -> dict[str, Any]:
        vocabulary = self.tagger.vocabulary
        over = scores > (vocabulary.thresholds if options.threshold is None else options.threshold)
        picked = np.flatnonzero(over)
        order = picked[np.argsort(-scores[picked], kind="stable")][: options.top_k]
        answer: dict[str, Any] = {
            "path": name, "tags": [vocabulary.tags[i] for i in order], "scores": [float(scores[i]) for i in order],
        }
        if options.lang != "en":
            answer["tags_zh"] = [vocabulary.tags_zh[i] for i in order]  # type: ignore[index]
        answer.update(width=width, height=height, error=None)
        if options.all_scores:
            answer["all_scores"] = [float(value) for value in scores]
        return answer

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/info`` says: the model, its vocabulary and where it runs."""
        meta = self.tagger.metadata()
        vocabulary = self.tagger.vocabulary
        return {
            "model_kind": meta["model_kind"], "checkpoint_sha256": meta["checkpoint_sha256"],
            "vocabulary_size": len(vocabulary), "chinese_names": vocabulary.tags_zh is not None,
            "thresholds": getattr(vocabulary, "thresholds_source", None) or _thresholds_said(meta["thresholds"]),
            "input_size": meta["input_size"], "precision": meta["precision"], "device": str(self.tagger.device),
            "ramtag_version": meta["ramtag_version"], "batch_size": self.batcher.batch_size,
            "max_wait_ms": round(self.batcher.max_wait * 1000), "queue_capacity": self.batcher.capacity,
        }


def _thresholds_said(values: list[float]) -> str:
    return f"one threshold for every tag ({values[0]:g})" if len(set(values)) == 1 else "per tag"


def _failed(name: str, error: str, options: Options) -> dict[str, Any]:
    answer: dict[str, Any] = {"path": name, "tags": [], "scores": []}
    if options.lang != "en":
        answer["tags_zh"] = []
    answer.update(width=None, height=None, error=error)
    if options.all_scores:
        answer["all_scores"] = None
    return answer


def _inline(text: str, name: str) -> tuple[str, bytes]:
    """A data URL's or a base64 text's bytes, and a name whose extension the media type gives."""
    from ..inputs import ImageDecodeError

    found = _DATA_URL.match(text)
    if found is not None:
        payload = text[found.end():]
        if not found.group("b64"):
            raise ImageDecodeError("a data: URL of an image must be base64")
        kind = (found.group("type") or "").lower()
        name = name if "." in name else name + _EXTENSIONS.get(kind, "")
    else:
        payload = text
    try:
        return name, base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageDecodeError("not an image: neither base64 nor a data: URL") from None


def check_serve_options(host: str, token: str | None, batch_size: int, max_wait_ms: float, queue: int) -> None:
    """Mistakes ``ramtag serve`` refuses before anything is loaded."""
    from .security import is_loopback

    if token and not (token.isascii() and token.isprintable() and " " not in token and token.strip()):
        raise UsageError("--token must be printable ASCII without spaces (what every HTTP client sends unchanged: "
                         "PhotoPrism, curl); `openssl rand -hex 16` makes one")
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} lets other machines in: give --token (or set RAMTAG_TOKEN) so that only "
            "callers that know it are answered"
        )
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if max_wait_ms < 0:
        raise UsageError("--max-wait-ms cannot be negative")
    if queue < batch_size:
        raise UsageError(f"--queue {queue} is less than --batch-size {batch_size}")
