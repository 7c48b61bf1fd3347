"""The history a chaos run records: every client operation, and every write the storage host saw.

A client operation is one `Op`, written once it completes: what was asked (`f`, `args`), by
which client process, when it was invoked and when it completed (``time.monotonic_ns()``: one
clock for every process on the machine, whatever network namespace it runs in), and how it
ended:

- ``ok``: the system acknowledged it; `result` holds what it answered;
- ``fail``: the system refused it and it certainly did not take effect (a 4xx answer);
- ``info``: the outcome is unknown (a timeout, a dropped connection, a 5xx): it may have taken
  effect at any moment after its invocation, or never. `complete_ns` is then the moment the
  client gave up, and `result` may hold the error.

The storage host (a process on a host of its own that the nemesis can cut off like any other)
writes one `StorageRecord` per write it is asked for, accepted or refused by its fence. Its
records are the ground truth for what a lock holder or a task attempt really did.

Both are kept as JSON lines, one object per line, so a run's history can be read back, checked
again, or cut down by hand into a failing example.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "FAIL",
    "INFO",
    "OK",
    "Op",
    "Outcome",
    "Recorder",
    "StorageRecord",
    "read_ops",
    "read_storage",
    "write_jsonl",
]

Outcome = Literal["ok", "fail", "info"]
OK: Outcome = "ok"
FAIL: Outcome = "fail"
INFO: Outcome = "info"
_OUTCOMES = frozenset({OK, FAIL, INFO})


@dataclass(frozen=True, slots=True, kw_only=True)
class Op:
    """One client operation and how it ended.

    `f` names the operation; the workload uses (args → result when ``ok``):

    - ``submit``: {key, rule} → {task_id}; `key` is the idempotency key, `rule` what the task
      body does ("ok", "fail-once", "fail-always", "slow");
    - ``workflow``: {key, names} → {workflow_id, task_ids: {name: id}};
    - ``cancel``: {task_id} → {status};
    - ``task-read``: {task_id} → {status, attempt, priority} (``fail`` if unknown: 404);
    - ``set-priority``: {task_id, priority} → {} (register writes on a parked task);
    - ``lock-acquire``: {lock, holder} → {token};
    - ``lock-release``: {lock, holder, token} → {};
    - ``lock-read``: {lock} → {holders: [{holder, token}]};
    - ``fenced-append``: {lock, holder, token, data} → {accepted: bool};
    - ``send``: {sender, receiver, seq} → {message_id};
    - ``receive``: {agent} → {messages: [{sender, seq, message_id}]};
    - ``ack``: {agent, upto} → {};
    - ``final-task``: {task_id} → {status, attempt} after healing (``fail`` if unknown: 404).
    """

    process: str
    f: str
    invoke_ns: int
    complete_ns: int
    type: Outcome
    args: Mapping[str, Any] = field(default_factory=dict)
    result: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.type not in _OUTCOMES:
            raise ValueError(f"outcome {self.type!r} is not one of {sorted(_OUTCOMES)}")
        if self.complete_ns < self.invoke_ns:
            raise ValueError(f"{self.f} by {self.process} completed before it was invoked")

    @property
    def ok(self) -> bool:
        return self.type == OK

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Op:
        return cls(
            process=str(data["process"]),
            f=str(data["f"]),
            invoke_ns=int(data["invoke_ns"]),
            complete_ns=int(data["complete_ns"]),
            type=data["type"],
            args=dict(data.get("args", {})),
            result=dict(data.get("result", {})),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class StorageRecord:
    """One write the storage host was asked for, in the order it decided them.

    `stream` is what was written to: ``lock:<name>`` for a lock's fenced file, ``task:<id>``
    for a task's attempts. `writer` says who wrote (a lock holder, or ``<task id>/<attempt>``),
    `token` the fencing token it carried, `event` what it wrote (a lock holder's data; a task
    attempt's ``start`` or ``end``), `at_ns` when the host decided, and `accepted` whether the
    fence let it through (refused when a higher token had already written to the stream).
    """

    stream: str
    writer: str
    token: int
    event: str
    at_ns: int
    accepted: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StorageRecord:
        return cls(
            stream=str(data["stream"]),
            writer=str(data["writer"]),
            token=int(data["token"]),
            event=str(data["event"]),
            at_ns=int(data["at_ns"]),
            accepted=bool(data["accepted"]),
        )


class Recorder:
    """Collects the operations of many client threads; `call` times and classifies one."""

    def __init__(self) -> None:
        self._ops: list[Op] = []
        self._mutex = threading.Lock()

    def add(self, op: Op) -> None:
        with self._mutex:
            self._ops.append(op)

    def record(
        self,
        process: str,
        f: str,
        args: Mapping[str, Any],
        *,
        invoke_ns: int,
        outcome: Outcome,
        result: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> Op:
        op = Op(
            process=process,
            f=f,
            invoke_ns=invoke_ns,
            complete_ns=max(invoke_ns, time.monotonic_ns()),
            type=outcome,
            args=dict(args),
            result=dict(result or {}),
            error=error,
        )
        self.add(op)
        return op

    def ops(self) -> list[Op]:
        """Every operation recorded so far, in the order they completed."""
        with self._mutex:
            return sorted(self._ops, key=lambda op: (op.complete_ns, op.invoke_ns))


def write_jsonl(path: Path, items: Iterable[Op | StorageRecord]) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for item in items:
            out.write(json.dumps(item.to_json(), sort_keys=True) + "\n")


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as src:
        for line in src:
            if line.strip():
                yield json.loads(line)


def read_ops(path: Path) -> list[Op]:
    return [Op.from_json(data) for data in _lines(path)]


def read_storage(path: Path) -> list[StorageRecord]:
    return [StorageRecord.from_json(data) for data in _lines(path)]
