"""Ctrl-C and SIGTERM during a run: the first stops it after the batch in hand, the second at once.

``CtrlC`` is installed by the command line while a local run tags. The first signal sets the run's
``stop`` event: the batch being tagged is finished and saved, and the run ends. Nothing is raised
from the signal handler then: an exception thrown into whatever the main thread was doing (a fork's
bookkeeping, a library holding a lock) could leave the process hung. So the inputs, whose next item
may be minutes away (a tar shard over a stalled connection), are read on a thread of their own
(``prefetched``), and the main thread waits for them in short steps, looking at ``stop`` between
them: a stop while it waits ends the stream of images there, and what was tagged is saved.
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_waiting = 0  # the main thread waits for the next input (``prefetched``): said by the first signal
_STEP_S = 0.1  # how often a wait looks at ``stop``
_END = object()
_Entry = tuple[Any, "BaseException | None"]  # an input, or _END with the error that ended them (if one did)


def prefetched(items: Iterable[T], stop: threading.Event, depth: int = 16) -> Iterator[T]:
    """``items`` read ahead on a thread of their own (at most ``depth`` ahead), ending early when
    ``stop`` is set while the next one is awaited. An error of theirs is raised here, in order. The
    thread is a daemon: one left waiting on a stalled connection holds nothing of the run's."""
    box: queue.Queue[_Entry] = queue.Queue(maxsize=depth)
    gone = threading.Event()  # the consumer stopped asking

    def put(entry: _Entry) -> bool:
        while not gone.is_set():
            try:
                box.put(entry, timeout=_STEP_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, raised there
            put((_END, error))
            return
        finally:
            close = getattr(items, "close", None)  # a generator's files and connections, let go here
            if close is not None:
                close()
        put((_END, None))

    threading.Thread(target=produce, name="ramtag-inputs", daemon=True).start()
    try:
        while (entry := _next(box, stop)) is not None:
            item, error = entry
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        gone.set()


def _next(box: queue.Queue[_Entry], stop: threading.Event) -> _Entry | None:
    """The next entry of ``box``, waited for in short steps; None once ``stop`` is set."""
    global _waiting
    _waiting += 1
    try:
        while not stop.is_set():
            try:
                return box.get(timeout=_STEP_S)
            except queue.Empty:
                continue
        return None
    finally:
        _waiting -= 1


class CtrlC:
    """While installed, the first Ctrl-C (or SIGTERM: ``timeout``, ``kill``, ``docker stop``, a batch
    scheduler) sets ``stop`` (the run ends after the batch in hand, which is saved) and calls
    ``on_first`` with the signal and whether the run was only waiting for its inputs; a second one
    raises ``KeyboardInterrupt`` at once. Signals arrive in the main thread only: elsewhere
    installing does nothing."""

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
        if self.on_first is not None:
            self.on_first(signum, _waiting > 0)
