"""What a tagging command says on stderr while it runs: a live bar on a terminal, else a log line.

``ramtag run`` counts images (``ramtag.cli.run``), ``ramtag run --engine ray`` counts parts of the
output (``ramtag.cli.scale``); both share the bar's life cycle, the rate and the quiet/terminal rules here.
"""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, SpinnerColumn, TextColumn

from ..text import terminal_text
from .common import err_console, plural

LOG_EVERY_S = 10.0  # how often a run without a terminal logs a progress line


class ProgressReport:
    """The progress bar or log lines of one run; ``images`` and ``errors`` are counted by subclasses."""

    def __init__(self, *, quiet: bool, verbose: bool, started: float) -> None:
        self.quiet = quiet
        self.verbose = verbose
        self.started = started  # when the command started: the summary's wall time
        self.images = 0
        self.errors = 0
        self._bar: Progress | None = None
        self._task: Any = None
        self._since = self._logged = time.perf_counter()

    def columns(self) -> list[ProgressColumn]:
        """The bar's columns after its spinner, "tagging", bar and count."""
        raise NotImplementedError

    def fields(self) -> dict[str, Any]:
        """The task's ``total`` and the starting values of the fields the columns show."""
        raise NotImplementedError

    def begin(self) -> None:
        """Start the bar (on a terminal) and the clock of the rate: tagging starts now."""
        self._since = self._logged = time.perf_counter()
        if not self.quiet and err_console.is_terminal:
            self._bar = Progress(
                SpinnerColumn(), TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), *self.columns(),
                console=err_console, transient=True,
            )
            self._task = self._bar.add_task("tagging", rate="", errors="", **self.fields())
            self._bar.start()

    def end(self) -> None:
        """Stop the bar, so that what is printed next is not drawn over."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __enter__(self) -> ProgressReport:
        self.begin()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.end()

    def rate(self) -> float:
        """Images per second since tagging began."""
        elapsed = time.perf_counter() - self._since
        return self.images / elapsed if elapsed > 0 else 0.0

    def show(self, log_line: str, **fields: Any) -> None:
        """Move the bar on (``fields``: completed, total, ...), or log ``log_line`` now and then."""
        if self._bar is not None:
            self._bar.update(
                self._task, rate=f"{self.rate():.1f} img/s",
                errors=plural(self.errors, "error") if self.errors else "", **fields,
            )
        elif not self.quiet and time.perf_counter() - self._logged >= LOG_EVERY_S:
            self._logged = time.perf_counter()
            err_console.print(log_line, markup=False)

    def say(self, text: str) -> None:
        """One message on stderr, file names in it made safe for a terminal (``terminal_text``)."""
        err_console.print(terminal_text(text, lines=True), markup=False, soft_wrap=True)

    def elapsed(self) -> float:
        """Seconds since the command started (imports and model loading included)."""
        return time.perf_counter() - self.started

    def timing(self) -> str:
        """``in 10.3 s (4.1 s to start, then 1.7 images/s)``: the rate covers tagging only."""
        startup = max(0.0, self._since - self.started)
        return f"in {self.elapsed():.1f} s ({startup:.1f} s to start, then {self.rate():.1f} images/s)"

    def counts(self) -> str:
        """``5 images: 4 tagged, 1 error``."""
        return f"{plural(self.images, 'image')}: {self.images - self.errors} tagged, {plural(self.errors, 'error')}"
