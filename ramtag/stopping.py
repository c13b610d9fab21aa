"""Ctrl-C and SIGTERM during a run: the first stops it after the batch in hand, the second at once.

``CtrlC`` is installed by the command line while a local run tags. The first signal sets the run's
``stop`` event: the batch being tagged is finished and saved. But while the run is only waiting for
its next batch (``waiting``: images being read, a tar shard arriving over a stalled connection,
decoding workers busy), there is no batch in hand to finish, and the wait could last as long as a
network timeout: then the first signal also raises ``Stopped`` there, which ends the stream of
batches at once, and what was tagged before is saved as after any stop.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_waiting = 0  # how many ``waiting`` blocks the main thread is in
_held = 0  # how many ``not_now`` blocks within them
_deferred = False  # a stop came during ``not_now``: raised when it ends


class Stopped(KeyboardInterrupt):
    """The first Ctrl-C or SIGTERM arrived while the run waited for its next batch. A
    ``KeyboardInterrupt``: caught anywhere but where the batches are awaited, it stops the run as a
    second Ctrl-C does (what was saved stays)."""


@contextmanager
def waiting() -> Iterator[None]:
    """A stretch of the main thread with no batch in hand, which a stop may cut short (``Stopped``)."""
    global _waiting
    main = threading.current_thread() is threading.main_thread()  # where signals are handled
    if main:
        _waiting += 1
    try:
        yield
    finally:
        if main:
            _waiting -= 1


@contextmanager
def not_now() -> Iterator[None]:
    """Within ``waiting``, bookkeeping that a stop must not cut in half (an output deciding what it
    needs, which may ask ExifTool): a stop arriving here is raised when it ends."""
    global _held, _deferred
    main = threading.current_thread() is threading.main_thread()
    if main:
        _held += 1
    try:
        yield
    except BaseException:  # a second Ctrl-C or an error: it goes on as it is, never hidden as a stop
        if main:
            _held -= 1
            _deferred = _deferred and _held > 0
        raise
    if main:
        _held -= 1
        if _held == 0 and _deferred:
            _deferred = False
            raise Stopped


class CtrlC:
    """While installed, the first Ctrl-C (or SIGTERM: ``timeout``, ``kill``, ``docker stop``, a batch
    scheduler) sets ``stop`` (the run ends after the batch in hand, which is saved; at once while it
    is ``waiting``) and calls ``on_first`` with the signal and whether it waited; a second one raises
    ``KeyboardInterrupt`` at once. Signals arrive in the main thread only: elsewhere installing does
    nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: threading.Event, on_first: Callable[[int, bool], None] | None = None) -> None:
        self.stop = stop
        self.on_first = on_first
        self.received: int | None = None  # the signal that stopped the run
        self._previous: dict[int, Any] | None = None

    def install(self) -> None:
        if self._previous is None and threading.current_thread() is threading.main_thread():
            # A signal the process was started ignoring (`nohup`, a script's `cmd &`) stays ignored.
            self._previous = {number: signal.signal(number, self._handle) for number in self.SIGNALS
                              if signal.getsignal(number) is not signal.SIG_IGN}

    def remove(self) -> None:
        if self._previous is not None:
            for number, handler in self._previous.items():
                signal.signal(number, handler)
            self._previous = None

    def _handle(self, signum: int, _frame: object) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.received = signum
        self.stop.set()
        global _deferred
        waited = _waiting > 0
        if self.on_first is not None:
            self.on_first(signum, waited)
        if waited and _held:
            _deferred = True
        elif waited:
            raise Stopped
