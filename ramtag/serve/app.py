"""The HTTP side of ``ramtag serve``: FastAPI routes over a ``Service``.

- ``POST /v1/tag``: images as multipart files (field ``files``, repeated; options as form fields or
  query parameters) or JSON ``{"images": [...], "threshold", "top_k", "lang", "all_scores"}``;
  answers ``{"results": [...]}``, one per image, in order.
- ``POST /api/v1/vision/labels``: PhotoPrism's Vision API (``photoprism``).
- ``GET /healthz`` (503 until the model is loaded), ``GET /v1/info``, ``GET /metrics``, ``GET /``.

Every route but ``/``, ``/healthz`` needs the token when the server has one. A body over
``max_body`` bytes gets 413 before it is read further; a request that cannot be admitted (the queue
is full, or ``in_flight`` requests are being answered already, before its body is read) gets 503
with ``Retry-After``; one that takes longer than ``timeout`` gets 504.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..errors import RamtagError
from ..text import terminal_text
from . import photoprism
from .batcher import Full
from .metrics import Metrics
from .page import PAGE
from .security import is_loopback, presented_token, token_matches
from .service import BadRequest, Incoming, Options, Service

OPEN_PATHS = {"/", "/healthz"}
VISION = "/api/v1/vision/labels"
ROUTES = {*OPEN_PATHS, "/v1/info", "/metrics", "/v1/tag", VISION}
CLIENT_GONE = 499  # nginx's "client closed request"


class TooLarge(Exception):
    pass


@dataclass
class ServerState:
    """What the routes share: the service once the model is loaded, and the server's limits.
    ``loopback`` without a token: only requests addressed to this machine by name (``Host:
    localhost``, ``127.0.0.1``) are answered, so a web page cannot reach the server through DNS
    rebinding (with a token, such a page cannot present it). ``in_flight``: requests answered at once
    at most; the others get 503 before their body is read, which bounds the memory bodies take."""

    token: str | None
    max_body: int
    timeout: float
    loopback: bool = True
    service: Service | None = None
    loading: str = "the model is loading"
    metrics: Metrics = field(default_factory=Metrics)
    log: Callable[[str], None] | None = None  # one line per request: who, what, the status; never a header
    in_flight: int = 256
    active: int = 0  # requests being answered now


def create_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="ramtag", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        path = request.scope["path"]  # the request line's path, never built from the Host header
        if state.loopback and state.token is None and not is_loopback(_hostname(request.headers.get("host") or "")):
            response: Response = _error(421, "this server answers requests for localhost only (--host); behind a "
                                        "proxy, have it send Host: localhost, or give the server a --token")
        elif state.active >= state.in_flight:
            response = _error(503, "busy: too many requests at once; try again shortly", {"Retry-After": "1"})
        elif state.token is not None and path not in OPEN_PATHS and not token_matches(
            presented_token(request.headers), state.token
        ):
            message = "a valid token is needed (Authorization: Bearer TOKEN)"
            body = photoprism.error_response("", 401, message) if path == VISION else {"error": message}
            response = JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        else:
            state.active += 1
            try:
                response = await call_next(request)
            except ClientDisconnect:  # the client hung up mid-upload: one log line, not a traceback
                response = Response(status_code=CLIENT_GONE)  # nobody reads it; logged and counted as nginx does
            finally:
                state.active -= 1
        route = request.scope.get("route")
        metrics = state.metrics  # the service's too, from the start
        took = time.perf_counter() - started
        known = path if path in ROUTES else "other"  # refused before routing (421, 401, busy): its route still
        metrics.request(getattr(route, "path", known), response.status_code, took)
        if state.log is not None:  # the path as routed (an unknown one as sent, shortened and escaped)
            shown = getattr(route, "path", None) or terminal_text(path[:100])
            client = request.client.host.removeprefix("::ffff:") if request.client is not None else "-"  # IPv4 on ::
            gone = " (the client closed the connection)" if response.status_code == CLIENT_GONE else ""
            state.log(f"{client} {request.method} {shown} {response.status_code} {took * 1000:.0f} ms{gone}")
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, error: StarletteHTTPException) -> JSONResponse:
        """No such route or method: the same ``{"error": ...}`` body as every other refusal."""
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if state.service is None:
            return JSONResponse({"status": "loading", "detail": state.loading}, status_code=503,
                                headers={"Retry-After": "5"})
        if state.service.batcher.failed is not None:
            return JSONResponse({"status": "failed", "detail": state.service.batcher.failed}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/v1/info")
    async def info() -> JSONResponse:
        service = state.service
        if service is None:
            return _not_ready(state)
        return JSONResponse({**service.info(), "tags": list(service.tagger.vocabulary.tags)})  # all_scores' order

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(state.metrics.text(), media_type="text/plain; version=0.0.4")

    @app.post("/v1/tag")
    async def tag(request: Request) -> JSONResponse:
        service = state.service
        if service is None:
            return _not_ready(state)
        try:
            answers = await asyncio.wait_for(_tag(request, service, state.max_body), state.timeout)
        except TooLarge:
            return _error(413, f"the request body is over {state.max_body:,} bytes (--max-body-mb)")
        except Full:
            return _error(503, "busy: the queue is full; try again shortly", {"Retry-After": "1"})
        except asyncio.TimeoutError:
            return _error(504, f"not answered within {state.timeout:g} s (--timeout)")
        except BadRequest as error:
            return _error(400, str(error))
        return JSONResponse({"results": answers})

    @app.post(VISION)
    async def labels(request: Request) -> JSONResponse:
        service = state.service
        said: list[str] = [""]  # the request's id, once read: every answer carries it
        if service is None:
            return JSONResponse(photoprism.error_response("", 503, state.loading), status_code=503,
                                headers={"Retry-After": "5"})
        try:
            answers = await asyncio.wait_for(_labels(request, service, state.max_body, said), state.timeout)
        except TooLarge:
            return _vision_error(said[0], 413, f"the request body is over {state.max_body:,} bytes")
        except Full:
            return _vision_error(said[0], 503, "busy: the queue is full", {"Retry-After": "1"})
        except asyncio.TimeoutError:
            return _vision_error(said[0], 504, f"not answered within {state.timeout:g} s")
        except (BadRequest, ValueError) as error:
            return _vision_error(said[0], 400, str(error) if isinstance(error, RamtagError) else "the body is not JSON")
        answer = photoprism.labels_response(said[0], answers, service.info())
        return JSONResponse(answer, status_code=answer["code"])

    return app


def _hostname(header: str) -> str:
    """``localhost`` of ``localhost:8000``, ``::1`` of ``[::1]:8000``."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


async def _tag(request: Request, service: Service, limit: int) -> list[dict[str, Any]]:
    """Read, parse and answer one /v1/tag request (under the request timeout as a whole)."""
    images, options = await _tag_request(request, limit)
    return await service.tag(images, options)


async def _labels(request: Request, service: Service, limit: int, said: list[str]) -> list[dict[str, Any]]:
    """Answer one PhotoPrism request; ``said[0]`` gets its id as soon as it is known."""
    if not request.headers.get("content-type", "application/json").startswith("application/json"):
        raise BadRequest("send JSON (Content-Type: application/json)")
    body = json.loads(await _body(request, limit) or b"null")
    if isinstance(body, dict) and body.get("id") is not None:
        said[0] = str(body["id"])
    said[0], images = photoprism.request_images(body)
    return await service.tag(images, Options())


async def _body(request: Request, limit: int) -> bytes:
    """The whole body, refused (``TooLarge``) as soon as it is over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    data = b"".join(chunks)
    request._body = data  # type: ignore[attr-defined]  # what request.form() parses (read once)
    return data


async def _tag_request(request: Request, limit: int) -> tuple[list[Incoming], Options]:
    data = await _body(request, limit)
    kind = request.headers.get("content-type", "")
    fields: dict[str, Any] = dict(request.query_params)
    if kind.startswith("multipart/form-data"):
        form = await request.form(max_files=10_000, max_part_size=limit)
        images = []
        for value in form.getlist("files"):
            if isinstance(value, str):
                raise BadRequest("'files' must be file parts (curl -F files=@photo.jpg)")
            images.append(Incoming(name=value.filename or f"image-{len(images)}", data=await value.read()))
        misnamed = sorted({key for key, value in form.multi_items() if key != "files" and not isinstance(value, str)})
        if misnamed:
            raise BadRequest(f"images go in the field 'files' (curl -F files=@photo.jpg), not {misnamed[0]!r}")
        fields.update((key, value) for key, value in form.items() if key != "files" and isinstance(value, str))
    elif not kind.startswith("application/json"):
        raise BadRequest("send multipart files (field 'files') or JSON (Content-Type: application/json)")
    else:
        try:
            body = json.loads(data or b"null")
        except ValueError:
            raise BadRequest("send multipart files (field 'files') or JSON {\"images\": [...]}") from None
        if not isinstance(body, dict) or not isinstance(body.get("images"), list):
            raise BadRequest("the JSON body needs an 'images' list (base64 or data: URLs)")
        if not all(isinstance(item, str) for item in body["images"]):
            raise BadRequest("each of 'images' must be a string (base64 or a data: URL)")
        images = [Incoming(name=f"image-{number}", text=item) for number, item in enumerate(body["images"])]
        fields.update((key, value) for key, value in body.items() if key != "images")
    return images, _options(fields)


OPTIONS = ("threshold", "top_k", "lang", "all_scores")


def _options(fields: dict[str, Any]) -> Options:
    unknown = sorted(set(fields) - set(OPTIONS))
    if unknown:  # a misspelt option (topk) would be ignored without a word
        raise BadRequest(f"unknown option {unknown[0]!r}; the options are {', '.join(OPTIONS)}")
    threshold, top_k, all_scores = fields.get("threshold"), fields.get("top_k"), fields.get("all_scores")
    flag = str(all_scores).strip().lower() if isinstance(all_scores, (str, int)) else all_scores
    if flag not in (*_YES, *_NO, None, True, False):  # JSON true/1/"yes", a form's "1"/"on"; "nope" is no answer
        raise BadRequest("all_scores must be true or false (1 or 0)")
    if isinstance(threshold, bool) or isinstance(top_k, bool):
        raise BadRequest("threshold must be a number, top_k a whole number")
    try:
        whole = None if top_k in (None, "") else float(str(top_k).strip())
        if whole is not None and not whole.is_integer():  # 2.9 was cut to 2 without a word
            raise ValueError
        return Options(
            threshold=None if threshold in (None, "") else float(threshold),
            top_k=None if whole is None else int(whole),
            lang=str(fields.get("lang") or "en"), all_scores=flag in (*_YES, True),
        )
    except (TypeError, ValueError, OverflowError):
        raise BadRequest("threshold must be a number, top_k a whole number") from None


_YES, _NO = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def _not_ready(state: ServerState) -> JSONResponse:
    return _error(503, state.loading, {"Retry-After": "5"})


def _error(code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=code, headers=headers)


def _vision_error(ident: str, code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(photoprism.error_response(ident, code, message), status_code=code, headers=headers)
