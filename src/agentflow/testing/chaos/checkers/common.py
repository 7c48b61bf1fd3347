"""What every checker shares: its result, how an operation reads in an anomaly, final reads.

An anomaly is one line a human can act on: which task, lock or message, which operations
(process, kind, outcome) and when (monotonic seconds, the clock of `Op.invoke_ns` and
`StorageRecord.at_ns`, so lines from the client history and the storage host compare).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentflow.state.records import TERMINAL_STATUSES
from agentflow.testing.chaos.history import FAIL, OK, Op, StorageRecord

__all__ = [
    "PARKED_GROUP",
    "TERMINAL",
    "CheckerResult",
    "FinalReads",
    "at",
    "final_reads",
    "is_parked",
    "ok_ops",
    "op_line",
    "record_line",
    "streams_of",
]

PARKED_GROUP = "parked"  # the group no worker serves: its tasks are registers, never run
TERMINAL = frozenset(str(s) for s in TERMINAL_STATUSES)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckerResult:
    """What one checker found.

    `ok` is False when some `anomalies` line shows a property broken. `inconclusive` says what
    the checker could not decide (a search that ran out of budget, a property the history
    lacks the data for): such a run is not a pass either, whatever `ok` says, and `verdict`
    reads ``UNKNOWN``.
    """

    name: str
    ok: bool
    anomalies: tuple[str, ...] = ()
    stats: Mapping[str, int] = field(default_factory=dict)
    inconclusive: tuple[str, ...] = ()

    @property
    def verdict(self) -> str:
        if not self.ok:
            return "FAIL"
        return "UNKNOWN" if self.inconclusive else "PASS"

    @classmethod
    def of(
        cls,
        name: str,
        anomalies: Iterable[str],
        stats: Mapping[str, int],
        inconclusive: Iterable[str] = (),
    ) -> CheckerResult:
        found = tuple(anomalies)
        return cls(
            name=name,
            ok=not found,
            anomalies=found,
            stats=dict(stats),
            inconclusive=tuple(inconclusive),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "verdict": self.verdict,
            "anomalies": list(self.anomalies),
            "stats": dict(self.stats),
            "inconclusive": list(self.inconclusive),
        }


def at(ns: int) -> str:
    """A monotonic time as seconds with milliseconds."""
    return f"{ns / 1e9:.3f}s"


def op_line(op: Op) -> str:
    """``submit by c3 [12.345s..12.400s] ok`` (the outcome's error, if any, after it)."""
    text = f"{op.f} by {op.process} [{at(op.invoke_ns)}..{at(op.complete_ns)}] {op.type}"
    if op.error:
        text += f" ({op.error[:80]})"
    return text


def record_line(rec: StorageRecord) -> str:
    verdict = "accepted" if rec.accepted else "refused"
    return f"{rec.event!r} by {rec.writer} token {rec.token} at {at(rec.at_ns)} {verdict}"


def is_parked(op: Op) -> bool:
    """A submit of a register task: to group ``parked`` (or with rule ``parked``)."""
    return op.args.get("group") == PARKED_GROUP or op.args.get("rule") == PARKED_GROUP


@dataclass(frozen=True, slots=True)
class FinalReads:
    """The `final-task` reads after healing: per task id, the last ``ok`` read (else the last
    read, a ``fail``: the task is unknown), which task id a read by idempotency key found, and
    the first read that failed (a task once acknowledged must never read as unknown)."""

    by_task: Mapping[str, Op]
    task_of_key: Mapping[str, str]
    failed: Mapping[str, Op]  # per task id, a final read that failed (404), if any

    def status(self, task_id: str) -> str | None:
        op = self.by_task.get(task_id)
        return None if op is None or not op.ok else str(op.result.get("status"))

    def attempt(self, task_id: str) -> int | None:
        op = self.by_task.get(task_id)
        if op is None or not op.ok:
            return None
        value = op.result.get("attempt", op.result.get("attempts"))
        return None if value is None else int(value)


def final_reads(ops: Iterable[Op]) -> FinalReads:
    by_task: dict[str, Op] = {}
    task_of_key: dict[str, str] = {}
    failed: dict[str, Op] = {}
    for op in ops:
        if op.f != "final-task":
            continue
        task_id = op.args.get("task_id") or op.result.get("task_id")
        if task_id is None:
            continue
        task_id = str(task_id)
        key = op.args.get("key")
        if key is not None and op.ok:
            task_of_key[str(key)] = task_id
        if op.type == FAIL:
            failed.setdefault(task_id, op)
        seen = by_task.get(task_id)
        if seen is None or _better(op, seen):
            by_task[task_id] = op
    return FinalReads(by_task=by_task, task_of_key=task_of_key, failed=failed)


def _better(op: Op, seen: Op) -> bool:
    """An ok read beats a failed one; among equals the later one wins."""
    if op.ok != seen.ok:
        return op.ok
    return op.complete_ns >= seen.complete_ns


def ok_ops(ops: Iterable[Op], f: str) -> list[Op]:
    return [op for op in ops if op.f == f and op.type == OK]


def streams_of(storage: Sequence[StorageRecord], prefix: str) -> dict[str, list[StorageRecord]]:
    """Records per stream named ``prefix...``, in the order the host decided them (stable on
    equal times)."""
    streams: dict[str, list[StorageRecord]] = defaultdict(list)
    for rec in storage:
        if rec.stream.startswith(prefix):
            streams[rec.stream].append(rec)
    for records in streams.values():
        records.sort(key=lambda r: r.at_ns)
    return streams
