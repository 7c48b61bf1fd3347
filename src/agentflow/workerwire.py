"""Typed, bounded decoding of the frames a worker sends to the master.

``decode_worker_frame`` turns one WebSocket binary frame into one of the frozen frames below,
or raises :class:`~agentflow.wire.FrameError`: nothing a worker says reaches a command before
it passed here. Every field is type-checked and bounded: ids and names by length, statuses and
streams as enums, fencing tokens and sequence numbers as non-negative int64, floats finite,
output chunks as binary of at most ``MAX_OUTPUT_CHUNK_BYTES`` (never a size to allocate).
Unknown keys are ignored, so a newer worker may add fields; they were bounded by the unpacker.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from agentflow.gitspec import GitSpecError, WorkspaceResult, check_sha
from agentflow.state.records import OUTCOME_STATUSES
from agentflow.wire import FrameError, unpack

__all__ = [
    "MAX_HELD",
    "MAX_OUTPUT_CHUNK_BYTES",
    "MAX_REASON_CHARS",
    "MAX_REPORT_ITEMS",
    "MAX_REPORT_OUTPUT_BYTES",
    "MAX_RESULT_CHARS",
    "OUTCOME_STATUSES",
    "Bye",
    "Drain",
    "Heartbeat",
    "Hello",
    "Outcome",
    "Report",
    "WorkerFrame",
    "decode_worker_frame",
]

INT64_MAX = (1 << 63) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
MAX_ID_CHARS = 256  # a task id, a worker id
MAX_NAME_CHARS = 128  # a group, a label name, a GPU name
MAX_LABEL_CHARS = 1024
MAX_HOSTNAME_CHARS = 255
MAX_SECRET_CHARS = 128
MAX_RESOURCES = 64
MAX_LABELS = 64
MAX_GPUS = 64
MAX_SLOTS = 4096
MAX_RESOURCE_AMOUNT = 1e15
MAX_HELD = 65_536  # attempts a hello or heartbeat may name
MAX_REPORT_ITEMS = 100_000  # starts, output chunks or outcomes in one report
MAX_OUTPUT_CHUNK_BYTES = 1 << 20
MAX_REPORT_OUTPUT_BYTES = 8 << 20
MAX_REASON_CHARS = 4096
MAX_RESULT_CHARS = 64 * 1024

STREAMS = frozenset({"stdout", "stderr"})

Held = tuple[tuple[str, int], ...]
T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    worker_id: str
    group: str
    slots: int
    resources: dict[str, float]
    labels: dict[str, str]
    hostname: str
    running: Held
    prefetch: int
    gpus: tuple[dict[str, Any], ...]
    secret: str | None
    pickled_functions: bool = False  # started with --allow-pickled-functions
    workspaces: bool = False  # runs git workspace and merge tasks (git >= 2.38)
    protocol: int = 1  # 2: takes many assignments in one ``assigns`` frame


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    task_id: str
    token: int
    status: str
    exit_code: int | None
    reason: str | None
    result: str | None
    workspace: dict[str, Any] | None = None  # a checked WorkspaceResult, as its wire


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    seq: int
    started: Held
    output: tuple[tuple[str, int, str, bytes], ...]
    outcomes: tuple[Outcome, ...]
    bases: tuple[tuple[str, int, str], ...] = ()  # (task id, token, sha): a workspace's base


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    running: Held


@dataclass(frozen=True, slots=True)
class Drain:
    pass


@dataclass(frozen=True, slots=True)
class Bye:
    pass


WorkerFrame = Hello | Report | Heartbeat | Drain | Bye


def decode_worker_frame(data: bytes) -> WorkerFrame:
    """One frame from a worker, typed; :class:`FrameError` says what is wrong with it."""
    frame = unpack(data)
    kind = frame["t"]
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise FrameError(f"unknown frame type {kind[:32]!r}")
    return decoder(frame)


# -- field checks ---------------------------------------------------------------------------


def _text(value: object, what: str, limit: int, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise FrameError(f"{what} must be a string")
    shortest = 0 if empty else 1
    if not shortest <= len(value) <= limit:
        raise FrameError(f"{what} must be {shortest}..{limit} characters")
    return value


def _int(value: object, what: str, low: int = 0, high: int = INT64_MAX) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise FrameError(f"{what} must be an integer in {low}..{high}")
    return value


def _flag(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise FrameError(f"{what} must be true or false")
    return value


def _number(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise FrameError(f"{what} must be a number")
    number = float(value)
    if not math.isfinite(number) or not 0 <= number <= MAX_RESOURCE_AMOUNT:
        raise FrameError(f"{what} must be a finite number in 0..{MAX_RESOURCE_AMOUNT:g}")
    return number


def _optional(value: object, check: Callable[[object], T]) -> T | None:
    return None if value is None else check(value)


def _list(value: object, what: str, limit: int) -> list[Any]:
    if not isinstance(value, list):
        raise FrameError(f"{what} must be an array")
    if len(value) > limit:
        raise FrameError(f"{what} holds more than {limit} items")
    return value


def _map(value: object, what: str, limit: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FrameError(f"{what} must be a map")
    if len(value) > limit:
        raise FrameError(f"{what} holds more than {limit} entries")
    return value


def _held(value: object, what: str, limit: int) -> Held:
    pairs: list[tuple[str, int]] = []
    for item in _list(value, what, limit):
        if not isinstance(item, list) or len(item) != 2:
            raise FrameError(f"each of {what} must be [task_id, token]")
        pairs.append((_text(item[0], "task_id", MAX_ID_CHARS), _int(item[1], "token")))
    return tuple(pairs)


# -- frames ---------------------------------------------------------------------------------


def _hello(frame: dict[str, Any]) -> Hello:
    slots = _int(frame.get("slots"), "slots", 1, MAX_SLOTS)
    resources = {
        _text(name, "resource name", 64): _number(amount, f"resource {name!r}")
        for name, amount in _map(frame.get("resources", {}), "resources", MAX_RESOURCES).items()
    }
    labels = {
        _text(name, "label name", MAX_NAME_CHARS): _text(
            v, "label value", MAX_LABEL_CHARS, empty=True
        )
        for name, v in _map(frame.get("labels", {}), "labels", MAX_LABELS).items()
    }
    return Hello(
        worker_id=_text(frame.get("worker_id"), "worker_id", MAX_ID_CHARS),
        group=_text(frame.get("group", "default"), "group", MAX_NAME_CHARS),
        slots=slots,
        resources=resources,
        labels=labels,
        hostname=_text(frame.get("hostname", ""), "hostname", MAX_HOSTNAME_CHARS, empty=True),
        running=_held(frame.get("running", []), "running", MAX_HELD),
        # -1: the master sizes the queue (AUTO_QUEUE); an older worker sends 0 or more.
        prefetch=min(_int(frame.get("prefetch", 0), "prefetch", -1, INT32_MAX), 4 * slots),
        gpus=tuple(_gpu(g) for g in _list(frame.get("gpus", []), "gpus", MAX_GPUS)),
        secret=_optional(frame.get("secret"), lambda s: _text(s, "secret", MAX_SECRET_CHARS)),
        pickled_functions=_flag(frame.get("pickled_functions", False), "pickled_functions"),
        workspaces=_flag(frame.get("workspaces", False), "workspaces"),
        protocol=_int(frame.get("protocol", 1), "protocol", 1, INT32_MAX),
    )


def _gpu(value: object) -> dict[str, Any]:
    gpu = _map(value, "gpu", 16)
    return {
        "index": _int(gpu.get("index"), "gpu index", 0, 1 << 16),
        "name": _text(gpu.get("name"), "gpu name", MAX_NAME_CHARS, empty=True),
        "memory_mb": _int(gpu.get("memory_mb"), "gpu memory_mb", 0, 1 << 40),
    }


def _report(frame: dict[str, Any]) -> Report:
    output: list[tuple[str, int, str, bytes]] = []
    total = 0
    for item in _list(frame.get("output", []), "output", MAX_REPORT_ITEMS):
        if not isinstance(item, list) or len(item) != 4:
            raise FrameError("each output item must be [task_id, token, stream, data]")
        task_id, token, stream, data = item
        if not isinstance(stream, str) or stream not in STREAMS:
            raise FrameError("output stream must be stdout or stderr")
        if not isinstance(data, bytes) or len(data) > MAX_OUTPUT_CHUNK_BYTES:
            raise FrameError(
                f"output data must be binary of at most {MAX_OUTPUT_CHUNK_BYTES} bytes"
            )
        total += len(data)
        if total > MAX_REPORT_OUTPUT_BYTES:
            raise FrameError(f"a report carries at most {MAX_REPORT_OUTPUT_BYTES} output bytes")
        output.append((_text(task_id, "task_id", MAX_ID_CHARS), _int(token, "token"), stream, data))
    return Report(
        seq=_int(frame.get("seq", 0), "seq"),
        started=_held(frame.get("started", []), "started", MAX_REPORT_ITEMS),
        output=tuple(output),
        outcomes=tuple(
            _outcome(o) for o in _list(frame.get("outcomes", []), "outcomes", MAX_REPORT_ITEMS)
        ),
        bases=tuple(_base(b) for b in _list(frame.get("bases", []), "bases", MAX_REPORT_ITEMS)),
    )


def _base(item: object) -> tuple[str, int, str]:
    if not isinstance(item, list) or len(item) != 3:
        raise FrameError("each base must be [task_id, token, sha]")
    return (_text(item[0], "task_id", MAX_ID_CHARS), _int(item[1], "token"), _sha(item[2]))


def _sha(value: object) -> str:
    try:
        return check_sha("base", value)  # type: ignore[arg-type]  # it checks the type too
    except GitSpecError as exc:
        raise FrameError(str(exc)) from None


def _workspace(value: object) -> dict[str, Any]:
    """A workspace result, re-checked and re-encoded: only what ``to_wire`` writes passes."""
    try:
        return WorkspaceResult.from_wire(_map(value, "workspace", 32)).to_wire()
    except GitSpecError as exc:
        raise FrameError(f"workspace: {exc}") from None


def _outcome(value: object) -> Outcome:
    outcome = _map(value, "outcome", 32)
    status = outcome.get("status")
    if not isinstance(status, str) or status not in OUTCOME_STATUSES:
        raise FrameError(f"outcome status must be one of {', '.join(sorted(OUTCOME_STATUSES))}")
    return Outcome(
        task_id=_text(outcome.get("task_id"), "task_id", MAX_ID_CHARS),
        token=_int(outcome.get("token"), "token"),
        status=status,
        exit_code=_optional(
            outcome.get("exit_code"), lambda c: _int(c, "exit_code", INT32_MIN, INT32_MAX)
        ),
        reason=_optional(
            outcome.get("reason"), lambda r: _text(r, "reason", MAX_REASON_CHARS, empty=True)
        ),
        result=_optional(
            outcome.get("result"), lambda r: _text(r, "result", MAX_RESULT_CHARS, empty=True)
        ),
        workspace=_optional(outcome.get("workspace"), _workspace),
    )


def _heartbeat(frame: dict[str, Any]) -> Heartbeat:
    return Heartbeat(running=_held(frame.get("running", []), "running", MAX_HELD))


_DECODERS: dict[str, Callable[[dict[str, Any]], WorkerFrame]] = {
    "hello": _hello,
    "report": _report,
    "heartbeat": _heartbeat,
    "drain": lambda _frame: Drain(),
    "bye": lambda _frame: Bye(),
}
