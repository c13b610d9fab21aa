"""One long-lived exiftool process (its ``-stay_open`` mode): metadata read from and written into photos.

ExifTool is the metadata engine photographers' tools trust; ramtag drives it rather than editing
JPEG, TIFF, PNG, WebP, HEIC or DNG containers itself. Starting Perl costs ~0.2 s, so one process
serves a whole run: each command is a list of arguments sent on its stdin, answered on stdout, and
ended by a marker line on both streams. ramtag's own XMP namespace (the record of what it added)
is taught to it by a config file written at start.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import RamtagError, UsageError

INSTALL = (
    "install ExifTool (Debian/Ubuntu: apt install libimage-exiftool-perl; macOS: brew install exiftool; "
    "Windows: exiftool.org), or set RAMTAG_EXIFTOOL to its path"
)
RAMTAG_NS = "https://ramtag.invalid/ns/xmp/1.0/"  # the namespace of ramtag's sidecar record
RECORD_TAGS = (
    "Settings", "Model", "Checkpoint", "Thresholds", "Date", "PreviousToolkit",
    "AddedSubject", "AddedHierarchicalSubject", "AddedTagsList", "AddedKeywords", "Created",
)
_LISTS = {"AddedSubject", "AddedHierarchicalSubject", "AddedTagsList", "AddedKeywords", "Created"}
COMMAND_SECONDS = 300.0  # a command that takes longer (a hung network share): the process is stopped


class ExifToolError(RamtagError):
    """exiftool is missing, died, hung, or refused a command."""


@dataclass(frozen=True)
class Answer:
    stdout: str
    stderr: str

    def errors(self) -> list[str]:
        """Its error lines, without exiftool's ``Error:`` prefix and the file name it appends."""
        found = []
        for line in self.stderr.splitlines():
            if line.startswith("Error: "):
                found.append(line[len("Error: "):].rsplit(" - ", 1)[0])
        return found


def _config() -> str:
    tags = "\n".join(
        f"    {name} => {{ List => 'Bag' }}," if name in _LISTS else f"    {name} => {{ }}," for name in RECORD_TAGS
    )
    return f"""%Image::ExifTool::UserDefined = (
    'Image::ExifTool::XMP::Main' => {{
        ramtag => {{ SubDirectory => {{ TagTable => 'Image::ExifTool::UserDefined::ramtag' }} }},
    }},
);
%Image::ExifTool::UserDefined::ramtag = (
    GROUPS => {{ 0 => 'XMP', 1 => 'XMP-ramtag', 2 => 'Image' }},
    NAMESPACE => {{ 'ramtag' => '{RAMTAG_NS}' }},
    WRITABLE => 'string',
{tags}
);
1;
"""


def find_exiftool() -> str:
    """The exiftool to run: ``RAMTAG_EXIFTOOL``, else the one on PATH; a ``UsageError`` if none."""
    named = os.environ.get("RAMTAG_EXIFTOOL")
    found = shutil.which(named) if named else shutil.which("exiftool")
    if found is None:
        where = f"RAMTAG_EXIFTOOL={named} is not an executable" if named else "exiftool is not installed"
        raise UsageError(f"--embed writes keywords with ExifTool, but {where}: {INSTALL}")
    return found


class ExifTool:
    """An exiftool process in ``-stay_open`` mode; ``with ExifTool() as tool: tool.run(...)``."""

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or find_exiftool()
        config = _config_file()
        self._count = 0
        self._lock = threading.Lock()
        try:
            self._process = subprocess.Popen(
                [self.executable, "-config", os.fspath(config), "-stay_open", "True", "-@", "-",
                 "-common_args", "-charset", "utf8", "-charset", "filename=utf8"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=_child_setup if os.name == "posix" else None,  # noqa: PLW1509 - no threads yet
                # Windows: a console's Ctrl-C reaches every process attached to it unless in a group of its own.
                creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) if os.name == "nt" else 0,
            )
        except OSError as error:
            raise ExifToolError(f"cannot start {self.executable} ({error.strerror or error}): {INSTALL}") from None
        self._lines: dict[str, queue.Queue[str | None]] = {name: queue.Queue() for name in ("stdout", "stderr")}
        self._readers = [threading.Thread(target=self._drain, args=(name,), daemon=True) for name in self._lines]
        for reader in self._readers:
            reader.start()
        self.version = self.run("-ver").stdout.strip()

    def __enter__(self) -> ExifTool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self, name: str) -> None:
        stream = getattr(self._process, name)
        for line in iter(stream.readline, b""):
            self._lines[name].put(line.decode("utf-8", errors="replace").rstrip("\r\n"))
        self._lines[name].put(None)  # the process ended

    def run(self, *args: str | os.PathLike[str]) -> Answer:
        """Run one command (exiftool's arguments, one per item); its stdout and stderr.

        Each argument is a line of exiftool's argument file: give files as absolute paths (a line
        starting with ``#`` or ``-``, or with spaces around it, means something else there)."""
        with self._lock:
            self._count += 1
            marker = f"{{ready{self._count}}}"
            lines = [os.fspath(arg) for arg in args]
            if any("\n" in line or "\r" in line for line in lines):
                raise ExifToolError("a file name or value with a line break cannot be passed to exiftool")
            text = "\n".join([*lines, "-echo4", marker, f"-execute{self._count}", ""])
            try:
                self._process.stdin.write(text.encode("utf-8", errors="surrogateescape"))
                self._process.stdin.flush()
            except OSError:
                raise self._died() from None
            return Answer(self._until("stdout", marker), self._until("stderr", marker))

    def _until(self, name: str, marker: str) -> str:
        lines = []
        while True:
            try:
                line = self._lines[name].get(timeout=COMMAND_SECONDS)
            except queue.Empty:
                self._process.kill()
                raise ExifToolError(f"exiftool gave no answer in {COMMAND_SECONDS:.0f} s; stopped it") from None
            if line is None:
                raise self._died()
            if line == marker:
                return "\n".join(lines)
            lines.append(line)

    def _died(self) -> ExifToolError:
        code = self._process.poll()
        return ExifToolError(f"exiftool ({self.executable}) stopped unexpectedly (exit status {code})")

    def read(self, path: Path, *tags: str) -> dict[str, Any]:
        """``tags`` of one file as exiftool's JSON (``-G1`` names, lists as lists); {} if none."""
        answer = self.run("-j", "-G1", "-a", "-struct", *tags, os.path.abspath(path))
        if not answer.stdout.strip():
            problems = answer.errors()
            raise ExifToolError(problems[0] if problems else f"exiftool could not read it ({answer.stderr.strip()})")
        # Numbers as exiftool wrote them: a keyword "1.50" must not come back as 1.5.
        found = json.loads(answer.stdout, parse_int=str, parse_float=str)[0]
        found.pop("SourceFile", None)
        return found

    def close(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None and process.poll() is None:
            try:
                process.stdin.write(b"-stay_open\nFalse\n")
                process.stdin.close()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process is not None:
            for reader in self._readers:
                reader.join(timeout=5)  # they end at the streams' end, once the process is gone
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


def _config_file() -> Path:
    """ramtag's exiftool config, in its cache (written once; rewritten when it changes)."""
    from . import atomic
    from .paths import cache_dir

    text = _config()
    for folder in (cache_dir() / "exiftool", Path(tempfile.gettempdir()) / f"ramtag-exiftool-{os.getuid() if hasattr(os, 'getuid') else 0}"):
        path = folder / "ramtag.config"
        try:
            if path.read_text(encoding="utf-8") == text:
                return path
        except OSError:
            pass
        try:
            folder.mkdir(parents=True, exist_ok=True)
            atomic.write_atomically(path, text)
            return path
        except OSError:
            continue  # a read-only cache: the temporary folder instead
    raise ExifToolError(f"cannot write exiftool's config for ramtag's XMP namespace in {cache_dir()} or the temporary folder")


def _child_setup() -> None:
    """In exiftool's process before it starts: Ctrl-C is ramtag's to handle (the batch in hand is
    finished, which needs exiftool), and on Linux exiftool ends when ramtag does, even by kill -9
    (waiting on stdin, it would otherwise stay)."""
    import signal

    # A process group of its own: a terminal sends Ctrl-C to its foreground group, and exiftool
    # installs its own SIGINT handler (it exits), so ignoring the signal here would not be enough.
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
