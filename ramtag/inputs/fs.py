"""URLs read through fsspec: which inputs are URLs, and the filesystem that serves one.

The filesystems of cloud stores come from their own packages (s3fs, gcsfs, adlfs); a missing one is
named in the error, with the ``pip install`` that provides it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, BinaryIO

from ..errors import UsageError

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# The package that provides each common scheme's filesystem, for the error when it is missing.
_PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
    "abfss": "adlfs", "adl": "adlfs", "http": "aiohttp", "https": "aiohttp", "oci": "ocifs",
    "hdfs": "pyarrow", "sftp": "paramiko", "ssh": "paramiko", "smb": "smbprotocol",
}


# An HTTP server that accepts a connection and then says nothing would otherwise hold a run for as
# long as the operating system keeps the socket open (minutes, per URL): seconds to connect, and
# the longest silence while reading.
HTTP_CONNECT_TIMEOUT = 20.0
HTTP_READ_TIMEOUT = 60.0


def is_url(text: str) -> bool:
    return _URL.match(text) is not None


def open_url(url: str) -> BinaryIO:
    """``url`` opened for one sequential read. Over HTTP as one streamed GET: fsspec's default file
    asks for ranges past its first block (5 MB), which a plain server (``python -m http.server``,
    many proxies) does not serve, and reading then stopped the run with a ValueError."""
    fs, path = filesystem(url)
    streamed = url.lower().startswith(("http://", "https://"))
    return fs.open(path, "rb", block_size=0) if streamed else fs.open(path, "rb")



def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem for ``url`` and the path within it; a missing package is named."""
    match = _URL.match(url)
    scheme = match.group(1).lower() if match else "file"
    try:
        import fsspec.core
    except ImportError:
        raise UsageError(f"{url}: URLs need fsspec: pip install fsspec") from None
    try:
        return fsspec.core.url_to_fs(url, **_options(scheme))
    except ImportError:
        package = _PACKAGES.get(scheme, f"the fsspec filesystem package for {scheme}://")
        raise UsageError(f"{url}: reading {scheme}:// URLs needs {package}: pip install {package}") from None
    except ValueError as error:
        raise UsageError(f"{url}: cannot use this URL ({error})") from None


def _options(scheme: str) -> dict:
    """The storage options ramtag sets: time limits for HTTP (aiohttp's client)."""
    if scheme not in ("http", "https"):
        return {}
    import aiohttp  # fsspec's HTTP filesystem needs it: missing, it is named like the others
    import fsspec.config

    # fsspec merges its configuration one level deep: the user's own client settings (proxies from
    # the environment, headers) are kept, and a time limit of theirs wins.
    client = dict(fsspec.config.conf.get(scheme, {}).get("client_kwargs", {}))
    client.setdefault(
        "timeout", aiohttp.ClientTimeout(total=None, sock_connect=HTTP_CONNECT_TIMEOUT, sock_read=HTTP_READ_TIMEOUT)
    )
    return {"client_kwargs": client}


def failure(error: BaseException) -> tuple[str, str]:
    """Why a URL could not be read, in words, and its kind (``missing`` or ``unreadable``).

    fsspec's HTTP filesystem reports every failed request as ``FileNotFoundError``, the server's
    answer or the connection's failure being its cause: that cause is what is worth saying.
    """
    import asyncio

    cause = error.__cause__ if isinstance(error, FileNotFoundError) else error
    timed_out = isinstance(cause, (TimeoutError, asyncio.TimeoutError))  # two classes before Python 3.11
    if isinstance(error, FileNotFoundError) and not (timed_out or type(cause).__module__.startswith("aiohttp")):
        # Other filesystems (s3fs...) chain their own "not found" errors: missing is what they mean.
        return "not found there: deleted, moved or never there", "missing"
    status = getattr(cause, "status", None)
    if isinstance(status, int):
        if status in (404, 410):
            return f"not found there (HTTP {status})", "missing"
        return f"the server answered HTTP {status} {getattr(cause, 'message', '') or ''}".rstrip(), "unreadable"
    if timed_out:
        connecting = "connect" in type(cause).__name__.lower()
        limit = f"could not connect within {HTTP_CONNECT_TIMEOUT:g} s" if connecting else \
            f"no answer from the server within {HTTP_READ_TIMEOUT:g} s"
        return f"{limit} (timed out); run again to retry it", "unreadable"
    host, os_error = getattr(cause, "host", None), getattr(cause, "os_error", None)
    if isinstance(host, str) and isinstance(os_error, OSError):  # aiohttp could not connect
        import errno

        where = f"{host}:{getattr(cause, 'port', '')}".rstrip(":")
        if type(cause).__name__ == "ClientConnectorDNSError":
            return f"cannot connect: the host name {host} does not resolve", "unreadable"
        if os_error.errno == errno.ECONNREFUSED:
            return f"cannot connect: {where} refused the connection (no server there?)", "unreadable"
        return f"cannot connect to {where} ({os_error.strerror or os_error})", "unreadable"
    if type(cause).__name__ in ("ClientPayloadError", "ServerDisconnectedError", "ContentLengthError"):
        # aiohttp's words ("<ContentLengthError: 400, ...>") read like an HTTP 400 the server never sent
        got = re.search(r"received (\d+) of (\d+) bytes", str(cause))
        part = f" ({int(got.group(1)):,} of {int(got.group(2)):,} bytes)" if got else ""
        return f"the connection closed before the whole file arrived{part}", "unreadable"
    return f"cannot read it ({type(cause).__name__}: {cause})", "unreadable"
