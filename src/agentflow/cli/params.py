"""Option values the commands share: durations, ``NAME=VALUE`` pairs and resource amounts.

Every option that takes a duration uses :data:`DURATION`, so ``--timeout 5m`` works wherever a
duration is taken; the parsing itself is :func:`agentflow.durations.parse_duration` (also used
for environment variables and TOML values).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import click

from agentflow.config import parse_size
from agentflow.durations import format_duration, parse_duration
from agentflow.errors import ConfigError

__all__ = ["DAY", "DURATION", "Duration", "parse_pairs", "parse_resources"]


if TYPE_CHECKING:  # generic from click 8.4 on; the project runs on 8.1 too
    _FloatParam = click.ParamType[float]
else:
    _FloatParam = click.ParamType


class Duration(_FloatParam):
    """Seconds (a float) from ``90``, ``90s``, ``5m``, ``1h30m``, ``250ms``, ``1.5h``; shown
    as ``DURATION`` in ``--help``."""

    name = "duration"

    def __init__(self, at_most_s: float | None = None) -> None:
        self.at_most_s = at_most_s  # the API's own bound, told before anything is sent

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = parse_duration(value)
        except ConfigError as exc:
            self.fail(exc.detail, param, ctx)
        if self.at_most_s is not None and seconds > self.at_most_s:
            self.fail(f"{value!r} is longer than {format_duration(self.at_most_s)}", param, ctx)
        return seconds


DURATION = Duration()
DAY = 86_400.0


def parse_pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """``("a=1,b=2", "c=3")`` as ``{"a": "1", "b": "2", "c": "3"}``; a part without ``=`` or
    without a name is a :class:`ConfigError` naming ``what`` (the option)."""
    out: dict[str, str] = {}
    for item in values:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"{what} must look like NAME=VALUE, got {part!r}")
            out[name.strip()] = value.strip()
    return out


def parse_resources(pairs: dict[str, str]) -> dict[str, float]:
    """``memory=16G`` becomes ``memory_mb=16384``; other names are plain numbers, finite and
    not negative (``cpu=2``, ``gpu=1``, ``memory_mb=512``)."""
    out: dict[str, float] = {}
    for name, value in pairs.items():
        if name in ("memory", "mem"):
            out["memory_mb"] = parse_size(value) / 2**20
            continue
        try:
            amount = float(value)
        except ValueError:
            raise ConfigError(f"resource {name} must be a number, got {value!r}") from None
        if not math.isfinite(amount) or amount < 0:
            raise ConfigError(f"resource {name} must be a number from 0 up, got {value!r}")
        out[name] = amount
    return out
