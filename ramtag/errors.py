"""User-facing errors.

Every failure a user can cause or fix (a missing file, a wrong checkpoint, no network) is a
``RamtagError`` whose message is one line naming the file and what to do. The CLI prints that line
and exits non-zero; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class RamtagError(Exception):
    """Base class: an expected failure with a message written for the user."""

    exit_code: int = 1


class CheckpointError(RamtagError):
    """A weights file that is missing, truncated, unsafe or not a RAM/RAM++ checkpoint."""


class VocabularyError(RamtagError):
    """A tag list, Chinese tag list or thresholds file that cannot be used with the model."""


class ResourceUnavailableError(RamtagError):
    """A file that must be downloaded but cannot be (offline, or the download failed)."""


class ChecksumError(RamtagError):
    """A downloaded or cached file whose sha256 is not the expected one."""


class UsageError(RamtagError):
    """Options that contradict each other or name something that does not exist."""

    exit_code = 2


class OutputError(RamtagError):
    """An output file that cannot be written without losing a user's data."""


class RamtagWarning(UserWarning):
    """Something a user should know that does not stop the work (a weaker default was chosen)."""


def silence(category: type[Warning], message: str = "") -> None:
    """Ignore another library's warning that ramtag says in its own words (or has no use for), from
    now on. Added only where it is missing: each new filter clears Python's record of the warnings
    shown once, which would then show at every call."""
    import warnings

    for action, pattern, kind, module, _ in warnings.filters:
        if action == "ignore" and kind is category and module is None and (pattern.pattern if pattern else "") == message:
            return
    warnings.filterwarnings("ignore", message=message, category=category)


class DefaultThresholdWarning(RamtagWarning):
    """A tag list without per-tag thresholds: every tag gets the default one."""


class GroundTruthError(RamtagError):
    """A label file or taglist that cannot be read as any of the formats."""
