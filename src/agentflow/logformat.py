"""How ``agentflow master`` and ``agentflow worker`` write their logs: text, or JSON lines.

``--log-format json`` writes one object per line for log aggregation (Loki, Elasticsearch,
CloudWatch): ``time`` (UTC, RFC 3339), ``level``, ``logger``, ``message``, plus the context
that applies: ``node_id`` and ``term`` on a master, ``worker_id`` on a worker (and on a master
within a worker's session), ``task_id`` within an attempt; ``exc`` holds a traceback.

Context comes from three places, the first that has it winning: a log call's ``extra``, the
:func:`bind` context of the running asyncio task (a context variable, so concurrent sessions
and attempts do not mix), and the process's fixed fields (:func:`setup_logging`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from agentflow.errors import ConfigError

__all__ = [
    "CONTEXT_FIELDS",
    "LOG_FORMATS",
    "JsonFormatter",
    "bind",
    "json_formatter",
    "setup_logging",
]

LOG_FORMATS = ("text", "json")
CONTEXT_FIELDS = ("node_id", "term", "worker_id", "task_id")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "agentflow_log_context", default=_NO_CONTEXT
)


def bind(**fields: Any) -> None:
    """Add ``fields`` (of :data:`CONTEXT_FIELDS`) to every record logged by the current
    asyncio task from now on (and by the tasks it creates after)."""
    unknown = set(fields) - set(CONTEXT_FIELDS)
    if unknown:
        raise ValueError(f"not a log context field: {sorted(unknown)}")
    _context.set(MappingProxyType({**_context.get(), **fields}))


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``fixed`` values are callables read at each record (the
    term changes) or plain values."""

    def __init__(self, fixed: Mapping[str, Any | Callable[[], Any]] | None = None) -> None:
        super().__init__()
        self._fixed = dict(fixed or {})

    def set_field(self, name: str, value: Any | Callable[[], Any]) -> None:
        """Add a fixed field, or a callable giving its value at each record."""
        self._fixed[name] = value

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        bound = _context.get()
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is None:
                value = bound.get(name)
            if value is None and name in self._fixed:
                fixed = self._fixed[name]
                value = fixed() if callable(fixed) else fixed
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str, ensure_ascii=False)


def setup_logging(
    level: str, log_format: str = "text", fixed: Mapping[str, Any] | None = None
) -> JsonFormatter | None:
    """Configure the root logger on stderr; returns the JSON formatter (None for text), whose
    fixed fields a master completes once it knows its term (``formatter.fixed``)."""
    if log_format not in LOG_FORMATS:
        choices = ", ".join(LOG_FORMATS)
        raise ConfigError(f"--log-format must be one of {choices}, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    formatter: JsonFormatter | None = None
    if log_format == "json":
        formatter = JsonFormatter(fixed)
        handler.setFormatter(formatter)
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    return formatter


def json_formatter() -> JsonFormatter | None:
    """The JSON formatter of the root logger's handlers, if :func:`setup_logging` set one."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return handler.formatter
    return None
