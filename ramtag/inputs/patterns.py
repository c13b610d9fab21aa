"""Brace patterns: ``shards/{00000..00127}.tar`` expanded by ramtag itself.

Users quote patterns, so they also work where no shell expands them, and for URLs: ``{a..b}`` and
``{a..b..step}`` count, zero-padded when a bound is written with leading zeros, and ``{x,y}`` lists
alternatives.
"""

from __future__ import annotations

import re

from ..errors import UsageError

MAX_EXPANSIONS = 1_000_000
_GROUP = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")


def expand_braces(pattern: str) -> list[str]:
    """Every string ``pattern`` stands for, in order; a pattern without braces stands for itself.

    Groups expand left to right (``{a,b}{1..2}`` → a1 a2 b1 b2); braces that are neither a range
    nor a list stay as they are.
    """
    for group in _GROUP.finditer(pattern):
        choices = _choices(group.group(1))
        if choices is None:
            continue
        head, tail = pattern[: group.start()], pattern[group.end() :]
        rests = expand_braces(tail)
        if len(choices) * len(rests) > MAX_EXPANSIONS:
            raise UsageError(f"{pattern}: stands for more than {MAX_EXPANSIONS:,} names; split it")
        return [head + choice + rest for choice in choices for rest in rests]
    return [pattern]


def _choices(body: str) -> list[str] | None:
    counted = _RANGE.match(body)
    if counted:
        first, last = int(counted.group(1)), int(counted.group(2))
        step = abs(int(counted.group(3) or 1)) or 1
        if abs(last - first) // step >= MAX_EXPANSIONS:
            raise UsageError(f"{{{body}}}: stands for more than {MAX_EXPANSIONS:,} names; split it")
        padded = any(len(b.lstrip("-")) > 1 and b.lstrip("-").startswith("0") for b in counted.group(1, 2))
        width = max(len(counted.group(1)), len(counted.group(2))) if padded else 0
        numbers = range(first, last + 1, step) if first <= last else range(first, last - 1, -step)
        return [f"{n:0{width}d}" for n in numbers]
    if "," in body:
        return body.split(",")
    return None
