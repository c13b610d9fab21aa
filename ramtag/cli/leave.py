"""Leaving the process quickly once the work is done.

With torch loaded, the interpreter's own teardown (destroying every module and object, the native
libraries' destructors) takes 1.5-1.8 s on a 2-core machine: a third of a one-photo ``ramtag run``.
Nothing in it is work of ramtag's: outputs are closed and renamed into place before a command
returns. So the ``ramtag`` program ends with ``os._exit`` after doing what the teardown would do
that matters: the buffered standard output and error (Python's and C's) are flushed and every
``atexit`` cleanup runs (multiprocessing's worker reaping, temporary folders, logging, Ray's
shutdown). Where another non-daemon thread is still running, or torch was never imported (usage
mistakes, ``--help``), the process exits the ordinary way.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import sys
import threading


def leave(code: object) -> None:
    """End the process with ``code`` as ``SystemExit(code)`` would (None 0, a number itself,
    anything else printed to stderr and 1), skipping the interpreter's teardown where it can."""
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr)
        code = 0 if code is None else 1
    runner = getattr(atexit, "_run_exitfuncs", None)
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if "torch" not in sys.modules or others or runner is None:
        sys.exit(code)
    _flush()
    runner()
    _flush()
    os._exit(code & 0xFF)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    try:  # what native libraries wrote through C's stdio, which os._exit does not flush
        ctypes.CDLL(None).fflush(None)
    except Exception:  # noqa: BLE001 - no C library to ask (not POSIX): nothing buffered there by us
        pass
