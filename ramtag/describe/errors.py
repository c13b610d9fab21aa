"""Failures of the language model behind ``ramtag describe``, written for the user."""

from __future__ import annotations

from ..errors import RamtagError


class LLMError(RamtagError):
    """The endpoint or local model could not give answers (refused key, bad model, gave up retrying)."""
