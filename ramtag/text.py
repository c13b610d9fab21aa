"""Text every output can hold, whatever the file names: names that are not UTF-8, and CSV cells
that a spreadsheet would run as formulas.

On POSIX a file name is bytes; Python keeps the bytes that are not UTF-8 as lone surrogates
(``os.fsdecode``), which no UTF-8 writer accepts: Parquet, CSV, JSON Lines and the JSON metadata
would all fail on them.

A spreadsheet opening a CSV takes a cell that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or
carriage return before one) for a formula, whatever its quoting: a file named ``=HYPERLINK(...)`` in a
downloaded tar shard would run as one in whoever opens the output. ``spreadsheet_cell`` puts a ``'``
in front of such text, which spreadsheets show as text; ``from_spreadsheet_cell`` takes it off again.
"""

from __future__ import annotations

import json
import re
from typing import Any


def printable(text: str) -> str:
    """``text`` with the bytes of a name that is not UTF-8 written as ``\\xe9`` (Python's
    backslash escapes), for the keys and messages outputs hold. The same name always gives the same text."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # surrogates that are not undecodable bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


# Control characters (C0, DEL, C1), which a file name may hold: on a terminal an escape sequence
# in one would clear the screen or recolour what follows, a carriage return overwrite the line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def terminal_text(text: str, *, lines: bool = False) -> str:
    """``text`` safe to print on a terminal: ``printable``, with control characters written as
    Python writes them (``\\x1b``, ``\\r``); ``lines``: newlines kept, for text of several lines."""
    text = printable(text)
    pattern = _CONTROL_BUT_NEWLINE if lines else _CONTROL
    return pattern.sub(lambda found: ascii(found.group())[1:-1], text) if pattern.search(text) else text


def unescaped(text: str) -> str:
    """The name ``printable`` made ``text`` from (its ``\\xNN`` escapes of bytes 0x80-0xff back as
    the bytes they were)."""
    return re.sub(r"\\x([89a-f][0-9a-f])", lambda found: chr(0xDC00 + int(found.group(1), 16)), text)


# What makes a spreadsheet read a cell as a formula, after any quotes earlier guarding added: a
# text already starting with ' and one of these gets one more, so that taking one off is exact.
_FORMULA_START = re.compile(r"'*[=+\-@\t\r]")


def spreadsheet_cell(text: str) -> str:
    """``text`` as a CSV cell that spreadsheets show as text and never run as a formula."""
    return "'" + text if _FORMULA_START.match(text) else text


def from_spreadsheet_cell(text: str) -> str:
    """The text ``spreadsheet_cell`` made ``text`` from (any other text as it is)."""
    return text[1:] if text.startswith("'") and _FORMULA_START.match(text, 1) else text


def json_text(value: Any, **options: Any) -> str:
    """``json.dumps`` with non-ASCII kept as it is, unless ``value`` holds a name that is not UTF-8:
    then everything is escaped (``\\udce9``), which ``json.loads`` reads back to the same name."""
    text = json.dumps(value, ensure_ascii=False, **options)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, **options)
    return text


def is_json_document(text: str) -> bool:
    """Whether ``text`` is a JSON array or object (a file of another kind given in its place)."""
    stripped = text.lstrip("\ufeff").strip()
    if stripped[:1] not in ("[", "{"):
        return False
    try:
        json.loads(stripped)
    except ValueError:
        return False
    return True
