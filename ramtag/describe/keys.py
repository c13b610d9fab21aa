"""API keys: found in a fixed order, kept out of every message.

Order: an explicit ``--api-key``, then a key file that only its owner can read (mode 0600), then
``OPENAI_API_KEY``. A key is wrapped in ``Secret`` as soon as it is read, so an accidental
``print``, f-string or repr shows ``<hidden>``; ``redact`` scrubs it from text a server sends back.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import UsageError

ENV_VAR = "OPENAI_API_KEY"


class Secret:
    """A string that does not show itself: only ``reveal()`` gives the value (for the header)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return "<hidden>"

    def __reduce__(self) -> tuple:  # never pickled into a cache or a worker process
        raise TypeError("a Secret cannot be pickled")


def config_dir() -> Path:
    """``$RAMTAG_CONFIG``, else ``$XDG_CONFIG_HOME/ramtag``, else ``~/.config/ramtag``."""
    explicit = os.environ.get("RAMTAG_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base).expanduser() / "ramtag"


def default_key_file() -> Path:
    return config_dir() / "api_key"


def read_key_file(path: Path) -> Secret | None:
    """The key in ``path``; ``None`` if there is no such file. Refuses a file others can read."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the API key file ({exc.strerror})") from None
    if os.name == "posix" and stat.S_IMODE(info.st_mode) & 0o077:
        raise UsageError(
            f"{path}: the API key file can be read by other users "
            f"(mode {stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}`"
        )
    try:
        value = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        raise UsageError(f"{path}: cannot read the API key file") from None
    return Secret(value) if value else None


def write_key_file(path: Path, key: str) -> None:
    """Store a key so that only its owner can read it: the file is created with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key.strip() + "\n")
    os.chmod(path, 0o600)


def resolve_api_key(explicit: str | None = None, key_file: Path | None = None) -> Secret | None:
    """The key to send, or ``None`` (local servers such as Ollama need none)."""
    if explicit:
        return Secret(explicit.strip())
    stored = read_key_file(key_file if key_file is not None else default_key_file())
    if stored is not None:
        return stored
    from_env = os.environ.get(ENV_VAR, "").strip()
    return Secret(from_env) if from_env else None


def redact(text: str, key: Secret | None, *, shortest: int = 8) -> str:
    """``text`` with the key, and any piece of it ``shortest`` characters or longer, hidden.

    Servers often echo a truncated key ("sk-abc...xyz"), so whole runs of it are replaced.
    """
    if key is None or not key.reveal():
        return text
    value = key.reveal()
    grams = {value[i : i + shortest] for i in range(len(value) - shortest + 1)}
    if not any(text[i : i + shortest] in grams for i in range(len(text) - shortest + 1)):
        return text.replace(value, "<hidden>")
    for size in range(len(value), shortest - 1, -1):
        for start in range(len(value) - size + 1):
            piece = value[start : start + size]
            if piece in text:
                text = text.replace(piece, "<hidden>")
    return text
