"""Durations as people write them: ``90``, ``90s``, ``5m``, ``1h30m``, ``250ms``, ``1.5h``.

Pure (no I/O, no clock): the CLI's ``--timeout``-like options, environment variables and TOML
values all go through :func:`parse_duration`, so one spelling works everywhere.
:func:`format_duration` writes seconds back in the same form.

A plain number is seconds. Units, largest first: ``d``, ``h``, ``m``, ``s``, ``ms``; each at
most once and in that order (``1h30m``, not ``30m1h``). Refused: empty, negative, NaN,
infinite, unknown units, and anything longer than :data:`MAX_DURATION_S`.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal

from agentflow.errors import ConfigError

__all__ = ["DURATION_FORM", "MAX_DURATION_S", "format_duration", "parse_duration"]

MAX_DURATION_S = 100 * 365 * 86_400  # a century: anything longer is a typo, not a timeout
MAX_DURATION_CHARS = 64  # longer text is refused before any matching
DURATION_FORM = "e.g. 90, 90s, 5m, 1h30m, 250ms, 1.5h"

# Units largest first; the order is the one a written duration must follow.
_UNITS: dict[str, Decimal] = {
    "d": Decimal(86_400),
    "h": Decimal(3_600),
    "m": Decimal(60),
    "s": Decimal(1),
    "ms": Decimal("0.001"),
}
_NUMBER = re.compile(r"\d+(?:\.\d+)?|\.\d+")
_PART = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*([^\d\s.]*)\s*")


def parse_duration(value: str | float | int) -> float:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h30m``, ``250ms``, ``1.5h`` or a number.

    Raises :class:`~agentflow.errors.ConfigError` with one line that says what is wrong and
    what works."""
    if isinstance(value, bool):  # True is an int to Python, not a duration to anyone
        raise _invalid(value, "not a duration")
    if isinstance(value, int | float):
        return _checked(value, float(value))
    text = value.strip()
    if not text:
        raise _invalid(value, "empty")
    if len(text) > MAX_DURATION_CHARS:
        raise _invalid(value, f"longer than {MAX_DURATION_CHARS} characters")
    if text.startswith("-"):
        raise _invalid(value, "must not be negative")
    if _NUMBER.fullmatch(text):
        return _checked(value, float(Decimal(text)))
    return _checked(value, float(_sum_of_parts(value, text)))


def _sum_of_parts(value: str, text: str) -> Decimal:
    total = Decimal(0)
    previous = -1
    position = 0
    units = list(_UNITS)
    while position < len(text):
        match = _PART.match(text, position)
        if match is None or match.end() == position:
            raise _invalid(value, f"use a number and a unit ({DURATION_FORM})")
        number, unit = match.groups()
        if unit not in _UNITS:
            why = f"unit missing after {number}" if not unit else f"unknown unit {unit!r}"
            raise _invalid(value, f"{why}; units are d, h, m, s, ms ({DURATION_FORM})")
        rank = units.index(unit)
        if rank <= previous:
            raise _invalid(value, "write each unit once, largest first (e.g. 1h30m)")
        previous = rank
        total += Decimal(number) * _UNITS[unit]
        position = match.end()
    return total


def _checked(value: object, seconds: float) -> float:
    if math.isnan(seconds):
        raise _invalid(value, "not a number")
    if seconds < 0:
        raise _invalid(value, "must not be negative")
    if seconds > MAX_DURATION_S:  # also infinity
        raise _invalid(value, "too long (at most 100 years)")
    return seconds


def _invalid(value: object, why: str) -> ConfigError:
    return ConfigError(f"invalid duration {value!r}: {why}")


def format_duration(seconds: float) -> str:
    """``seconds`` written as :func:`parse_duration` reads it: ``5400`` is ``1h30m``, ``0.25``
    is ``250ms``; a fraction of a millisecond is rounded to the nearest one."""
    _checked(seconds, seconds)
    left = round(seconds * 1000)
    if left == 0:
        return "0s"
    parts = []
    for unit, size in _UNITS.items():
        step = int(size * 1000)
        count, left = divmod(left, step)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
