"""``ramtag serve``: the model resident behind HTTP (``ramtag.serve``), until stopped.

Options are checked before anything heavy is imported (a public ``--host`` without a token is
refused). The server starts listening at once and loads the model beside it: ``/healthz`` answers
503 until the model is ready. A model that cannot be loaded stops the server with its one-line
error (exit 1). SIGTERM or Ctrl-C: the requests in flight are answered, new ones refused, exit 0.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..engine.job import ModelOptions, check_model_options, only_tag_names
from ..errors import RamtagError, UsageError
from .common import (
    CheckpointOpt,
    DeviceOpt,
    ModelOpt,
    OnlyTagsOpt,
    PrecisionOpt,
    TagListOpt,
    TagListZhOpt,
    ThresholdOpt,
    ThresholdsOpt,
    err_console,
    path_text,
)

SERVER_PANEL = "Server"
LIMITS_PANEL = "Limits"


def serve_command(
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on. Anything but loopback needs --token.", rich_help_panel=SERVER_PANEL)] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", min=0, max=65535, help="Port to listen on (0: any free one, printed).", rich_help_panel=SERVER_PANEL)] = 8000,
    token: Annotated[
        Optional[str],
        typer.Option("--token", metavar="TOKEN", envvar="RAMTAG_TOKEN", show_envvar=True, show_default=False,
                     help="Callers must send it (Authorization: Bearer TOKEN). Never printed or logged.",
                     rich_help_panel=SERVER_PANEL),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", metavar="N", min=1, help="Images per model batch, gathered from concurrent requests.", rich_help_panel=SERVER_PANEL)] = 8,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", metavar="MS", min=0, help="How long a batch waits to fill before it runs.", rich_help_panel=SERVER_PANEL)] = 20.0,
    queue: Annotated[int, typer.Option("--queue", metavar="N", min=1, help="Images admitted at once; more get 503 with Retry-After.", rich_help_panel=LIMITS_PANEL)] = 64,
    max_images: Annotated[int, typer.Option("--max-images", metavar="N", min=1, help="Images in one request.", rich_help_panel=LIMITS_PANEL)] = 32,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", metavar="MIB", min=0.001, help="Largest request body, in MiB (413 above).", rich_help_panel=LIMITS_PANEL)] = 64.0,
    max_pixels: Annotated[Optional[int], typer.Option("--max-pixels", metavar="N", min=1, show_default=False, help="Refuse images larger than this (default: about 179 million, a decompression-bomb guard).", rich_help_panel=LIMITS_PANEL)] = None,
    timeout: Annotated[float, typer.Option("--timeout", metavar="SECONDS", min=0.1, help="Seconds a request may take (504 after).", rich_help_panel=LIMITS_PANEL)] = 120.0,
    access_log: Annotated[bool, typer.Option("--access-log/--no-access-log", help="One line per request on stderr: client, method, endpoint, status, time (never a header or the token).", rich_help_panel=SERVER_PANEL)] = True,
    allow_urls: Annotated[bool, typer.Option("--allow-urls", help="Fetch http(s) image URLs given in requests (size and time limited); off: only the bytes sent.", rich_help_panel=LIMITS_PANEL)] = False,
    model: ModelOpt = None,  # type: ignore[assignment]
    checkpoint: CheckpointOpt = None,
    tag_list: TagListOpt = None,
    tag_list_zh: TagListZhOpt = None,
    thresholds: ThresholdsOpt = None,
    threshold: ThresholdOpt = None,
    only_tags: OnlyTagsOpt = None,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
) -> None:
    """Serve tagging over HTTP: POST /v1/tag, PhotoPrism's /api/v1/vision/labels, a page at /.

    The model is loaded once; concurrent requests are batched together. Listens on loopback unless told otherwise (then with a token).
    """
    from ..inputs.refs import MAX_PIXELS
    from ..model.config import MODEL_KINDS
    from ..serve.service import check_serve_options

    _check_extras()
    if model is not None and model not in MODEL_KINDS:
        raise UsageError(f"unknown model {model!r}; use one of {', '.join(MODEL_KINDS)}")
    check_model_options(device, precision, ("--checkpoint", checkpoint), ("--tag-list", tag_list),
                        ("--tag-list-zh", tag_list_zh), ("--thresholds", thresholds))
    check_serve_options(host, token, batch_size, max_wait_ms, queue)
    names = only_tag_names(only_tags) if only_tags is not None else None
    options = ModelOptions(kind=model, checkpoint=path_text(checkpoint), tag_list=path_text(tag_list),
                           tag_list_zh=path_text(tag_list_zh), thresholds=path_text(thresholds),
                           threshold=threshold, device=device, precision=precision, only_tags=names)
    from ..serve.service import Limits

    limits = Limits(max_images=max_images, max_pixels=max_pixels or MAX_PIXELS, allow_urls=allow_urls)
    _serve(options, host=host, port=port, token=token or None, batch_size=batch_size, max_wait=max_wait_ms / 1000,
           capacity=queue, limits=limits, max_body=int(max_body_mb * 1024 * 1024), timeout=timeout,
           access_log=access_log)


def _check_extras() -> None:
    """The server's packages are an extra: without them, say how to get them (found, not imported)."""
    import importlib.util

    packages = {"fastapi": ("fastapi",), "uvicorn": ("uvicorn",), "python-multipart": ("python_multipart", "multipart")}
    missing = [name for name, modules in packages.items()
               if all(importlib.util.find_spec(module) is None for module in modules)]
    if missing:
        raise RamtagError(f"ramtag serve needs {', '.join(missing)}: pip install 'ramtag[serve]'")


def _listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to the addresses ``host`` names (as asyncio binds them: a family the system
    lacks, such as IPv6 turned off, is passed over), or one line on why none: a port in use is the
    usual case, and uvicorn would only log it and exit 3."""
    sockets: list[socket.socket] = []
    problem: OSError | None = None
    try:
        found = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as error:
        found, problem = [], error
    both = {entry[0] for entry in found} >= {socket.AF_INET, socket.AF_INET6}
    for family, kind, proto, _name, address in dict.fromkeys(found):
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as error:
            problem = problem or error
            continue
        try:
            if os.name != "nt":  # on Windows the option lets another process take the port
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and both:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            elif family == socket.AF_INET6:  # `--host ::` alone takes IPv4 too, where the system allows it
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((address[0], port, *address[2:]))
        except OSError as error:
            sock.close()
            if error.errno == errno.EADDRINUSE:
                problem = error
                break  # the port is taken: not served on some addresses only
            problem = problem or error
            continue
        sockets.append(sock)
        port = port or sock.getsockname()[1]  # with --port 0, every address on the port the first got
    if sockets and (problem is None or problem.errno != errno.EADDRINUSE):
        return sockets
    for sock in sockets:
        sock.close()
    reason = (problem.strerror or str(problem)).lower() if problem else "no address"
    fix = ("pass another --port (0 picks a free one)" if problem is not None and problem.errno == errno.EADDRINUSE
           else "--host must be an address of this machine")
    raise RamtagError(f"cannot listen on {host}:{port}: {reason}; {fix}")


def _serve(options: ModelOptions, *, host: str, port: int, token: str | None, batch_size: int, max_wait: float,
           capacity: int, limits: object, max_body: int, timeout: float, access_log: bool = True) -> None:
    import asyncio

    import uvicorn

    from ..model.needed import check_model_files
    from ..serve.app import ServerState, create_app
    from ..serve.service import Service

    check_model_files(options.checkpoint, model=options.kind, tag_list=options.tag_list,
                      tag_list_zh=options.tag_list_zh, thresholds=options.thresholds)
    from ..serve.security import is_loopback

    if options.only_tags is not None and _lists_here(options):  # a misspelt name: said before listening
        from ..vocabulary import load_vocabulary

        try:
            vocabulary = load_vocabulary(
                tag_list=Path(options.tag_list) if options.tag_list else None,
                tag_list_zh=Path(options.tag_list_zh) if options.tag_list_zh else None, notes=[],
            )
        except RamtagError:
            vocabulary = None  # loading the model says what is wrong with the files
        if vocabulary is not None:
            vocabulary.positions(list(options.only_tags), open_set=False)  # serve has no --tags
    state = ServerState(token=token, max_body=max_body, timeout=timeout, loopback=is_loopback(host),
                        log=_request_log() if access_log else None, in_flight=max(64, 2 * capacity))
    failure: list[RamtagError] = []
    app = create_app(state)

    @contextlib.asynccontextmanager
    async def lifespan(_app: object):  # the model loads beside the listening server
        loop = asyncio.get_running_loop()

        def load() -> None:
            from ..engine.local import tagger_for

            try:
                tagger = tagger_for(options)
            except Exception as error:  # noqa: BLE001 - any failure to load stops the server, in words
                failure.append(error if isinstance(error, RamtagError) else RamtagError(
                    str(error) if isinstance(error, OSError) else f"cannot load the model ({type(error).__name__}: {error})"))
                server.should_exit = True
                return
            service = Service(tagger, batch_size=batch_size, max_wait=max_wait, capacity=capacity,
                              limits=limits, decoders=max(1, min(4, (os.cpu_count() or 2) - 1)),  # type: ignore[arg-type]
                              metrics=state.metrics)
            asyncio.run_coroutine_threadsafe(_ready(state, service), loop).result()

        threading.Thread(target=load, name="ramtag-load", daemon=True).start()
        yield
        if state.service is not None:
            await state.service.stop()

    app.router.lifespan_context = lifespan
    grace = max(30, int(timeout))
    # No limit_concurrency: requests in flight are limited by ramtag (ServerState.in_flight), answered in JSON.
    config = uvicorn.Config(app, host=host, port=port, access_log=False, log_level="warning", lifespan="on",
                            timeout_graceful_shutdown=grace)
    server = _graceful_server_class()(config, state, grace)
    _announce(server, host, token is not None)
    server.run(sockets=_listen(host, port))
    if failure:  # with its own exit code: a misspelt --only-tags name is a usage error (2)
        raise failure[0]


def _request_log():  # -> Callable[[str], None]
    """The access log's lines, written by a thread of their own: a stderr that nobody reads fills
    its pipe, and writing from the event loop would then stop the server. Past 10,000 lines waiting
    they are dropped instead."""
    import queue

    lines: queue.Queue[str] = queue.Queue(maxsize=10_000)

    def write() -> None:
        while True:
            err_console.print(lines.get(), markup=False, highlight=False, soft_wrap=True)

    threading.Thread(target=write, name="ramtag-request-log", daemon=True).start()

    def log(line: str) -> None:
        try:
            lines.put_nowait(line)
        except queue.Full:
            pass  # nobody reads stderr: the server goes on

    return log


def _lists_here(options: ModelOptions) -> bool:
    """Whether the tag lists can be read without a download (which would delay the listening)."""
    from ..model.download import cached_data_file

    return options.tag_list is not None or (
        cached_data_file("tag_list") is not None and cached_data_file("tag_list_zh") is not None
        and (options.thresholds is not None or cached_data_file("thresholds") is not None)
    )


def _graceful_server_class():  # uvicorn imported only by this command
    import signal
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, but a SIGTERM or Ctrl-C that stopped it gracefully is the end, exit 0:
        uvicorn would raise the signal again once stopped, and the process would die of it. The first
        signal says what the server waits for; a second one ends it at once, in a line, with the
        signal's exit status (uvicorn cancelled the requests in flight, with a traceback each)."""

        def __init__(self, config: object, state: object, grace: int) -> None:
            super().__init__(config)  # type: ignore[arg-type]
            self.state, self.grace = state, grace

        def handle_exit(self, sig: int, frame: object) -> None:  # type: ignore[override]
            active = self.state.active  # type: ignore[attr-defined]
            if self.should_exit and active:
                err_console.print(f"stopped at once: {active} request{'s' * (active != 1)} in flight not answered",
                                  markup=False, highlight=False, soft_wrap=True)
                sys.stderr.flush()
                os._exit(128 + sig)
            if active:
                err_console.print(f"stopping: answering the {active} request{'s' * (active != 1)} in flight first "
                                  f"(at most {self.grace} s); a second Ctrl-C or SIGTERM stops at once", markup=False,
                                  highlight=False, soft_wrap=True)
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

        @contextlib.contextmanager
        def capture_signals(self):  # type: ignore[override]
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return GracefulServer


async def _ready(state: object, service: object) -> None:
    await service.start()  # type: ignore[attr-defined]
    state.service = service  # type: ignore[attr-defined]
    info = service.info()  # type: ignore[attr-defined]
    err_console.print(f"ready: {info['model_kind']}, {info['vocabulary_size']} tags, {info['precision']} "
                      f"on {info['device']}", markup=False, highlight=False, soft_wrap=True)


def _example(port: int) -> str:
    """``, e.g. http://NAME:PORT`` with a name other machines may reach this one by: its host name
    unless that names loopback (as Debian's /etc/hosts has it), else its address on the way out."""
    import ipaddress

    try:
        name: str | None = socket.gethostname()
        if ipaddress.ip_address(socket.gethostbyname(name or "")).is_loopback:
            name = None
    except (OSError, ValueError):
        name = None
    if name is None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(("192.0.2.1", 9))  # a documentation address: nothing is sent
                name = probe.getsockname()[0]
        except OSError:
            return ""
    return f", e.g. http://{name}:{port}"


def _announce(server: object, host: str, token: bool) -> None:
    """Say where the server listens once the socket is bound (the port may have been 0)."""
    original = server.startup  # type: ignore[attr-defined]

    async def startup(sockets: object = None) -> None:
        await original(sockets=sockets)
        for bound in getattr(server, "servers", []):
            for sock in bound.sockets:
                address, port = sock.getsockname()[:2]
                shown = f"[{address}]" if ":" in address else address
                where = f"http://{shown}:{port}"
                if address in ("0.0.0.0", "::"):  # no address anyone can open: say what is meant
                    where = f"every address of this machine at port {port}{_example(port)}"
                guard = "token required" if token else "loopback only, no token"
                err_console.print(f"ramtag serve listening on {where} ({guard}); "
                                  "loading the model (GET /healthz says when it is ready)", markup=False, highlight=False,
                                  soft_wrap=True)

    server.startup = startup  # type: ignore[attr-defined]
