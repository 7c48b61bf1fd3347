"""Reads of task state: parked tasks are linearizable registers; other tasks never go back.

**Registers.** A parked task (group ``parked``: no worker serves it) is a register holding its
priority *level*, the ``priority`` field of ``GET /api/v1/tasks/{id}`` ("urgent", "high",
"medium", "low"). Aging never shows there: it moves only ``effective_priority``, which a read
shows for queued tasks and which changes with the reader's clock, so the check never reads it.
Its submit is the first write (``args.priority``, "medium" if absent; one write for every
submit that named the task, since a replayed submit writes nothing), `set-priority` a write,
`task-read` (and a `final-task` read that reports ``priority``) a read; a read answered 404
(``fail``) reads the register as absent. ``info`` writes may have happened at any moment after
their invocation, or never (`agentflow.testing.linearizability`: ``return_ms`` None); ``info``
reads constrain nothing; ``fail`` writes never happened. The linearizability checker compares
integer times: nanoseconds are replaced by their rank among the register's times, which keeps
every order (and every tie) of the history and merges none. The search is bounded per register;
a register it cannot decide is counted as ``registers_unknown`` and named in `inconclusive`:
not an anomaly, and not a pass.

**Other tasks.** If read A completed before read B was invoked, B's (attempts, status rank)
is not below A's, where the rank is 0 pending, 1 queued/assigned/running (a failed or lost
attempt sends a task back to queued with the same attempt count), 2 terminal; and once a read
showed a terminal status, every later read shows that status with the same attempts.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import replace

from agentflow.testing.chaos.checkers.common import (
    TERMINAL,
    CheckerResult,
    final_reads,
    is_parked,
    op_line,
)
from agentflow.testing.chaos.history import FAIL, INFO, OK, Op, StorageRecord
from agentflow.testing.linearizability import Operation, OpKind, Verdict, check_history

__all__ = ["REGISTER_MAX_STATES", "check_reads", "register_operations"]

NAME = "reads"
REGISTER_MAX_STATES = 200_000  # search budget per parked task
DEFAULT_PRIORITY = "medium"
_READS = ("task-read", "final-task")


def check_reads(
    ops: Sequence[Op],
    storage: Sequence[StorageRecord] = (),
    *,
    max_states: int = REGISTER_MAX_STATES,
) -> CheckerResult:
    registers = register_operations(ops)
    anomalies: list[str] = []
    unknown: list[str] = []
    for task_id, history in sorted(registers.items()):
        result = check_history(history, max_states=max_states)
        if result.verdict is Verdict.NOT_LINEARIZABLE:
            detail = "; ".join(line.strip() for line in result.explanation.splitlines())
            anomalies.append(f"parked task {task_id}: priority reads not linearizable: {detail}")
        elif result.verdict is Verdict.UNKNOWN:
            unknown.append(task_id)
    reads = _state_reads(ops, set(registers))
    for task_id, task_reads in sorted(reads.items()):
        anomalies.extend(_monotonic(task_id, task_reads))
    stats = {
        "registers": len(registers),
        "register_ops": sum(len(h) for h in registers.values()),
        "registers_unknown": len(unknown),
        "state_reads": sum(len(r) for r in reads.values()),
    }
    notes = []
    if unknown:
        notes.append(
            f"{len(unknown)} parked task(s) undecided within {max_states} states each: "
            + ", ".join(unknown[:5])
        )
    return CheckerResult.of(NAME, anomalies, stats, notes)


def register_operations(ops: Sequence[Op]) -> dict[str, list[Operation]]:
    """Each parked task's operations for `check_history`, times ranked (see the module doc)."""
    finals = final_reads(ops)
    submits: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.f != "submit" or not is_parked(op) or op.type == FAIL:
            continue
        task_id = op.result.get("task_id") or finals.task_of_key.get(str(op.args.get("key")))
        if task_id is not None:
            submits[str(task_id)].append(op)
    parked: dict[str, list[tuple[Op, OpKind, str | None]]] = {
        task_id: [(_creation(made), OpKind.PUT, _initial(made))]
        for task_id, made in submits.items()
    }
    for op in ops:
        task_id = str(op.args.get("task_id"))
        if task_id not in parked:
            continue
        entry = _register_op(op)
        if entry is not None:
            parked[task_id].append((op, *entry))
    clients: dict[str, int] = {}
    out: dict[str, list[Operation]] = {}
    for task_id, entries in parked.items():
        rank = _ranks(entries)
        out[task_id] = [
            Operation(
                client=clients.setdefault(op.process, len(clients)),
                kind=kind,
                key=task_id,
                invoke_ms=rank[op.invoke_ns],
                return_ms=None if op.type == INFO else rank[op.complete_ns],
                value=value if kind is OpKind.PUT else None,
                result=value if kind is OpKind.GET else None,
            )
            for op, kind, value in entries
        ]
    return out


def _creation(submits: Sequence[Op]) -> Op:
    """The one write that made a parked task, from every submit that named it (a retried or
    replayed submit with its key writes nothing again): somewhere between the first
    invocation and the first acknowledgement, or after the first invocation if none was."""
    first = min(submits, key=lambda o: o.invoke_ns)
    acked = [o.complete_ns for o in submits if o.type == OK]
    if acked:
        return replace(first, complete_ns=min(acked), type=OK)
    return replace(first, complete_ns=max(o.complete_ns for o in submits), type=INFO)


def _initial(submits: Sequence[Op]) -> str:
    first = min(submits, key=lambda o: o.invoke_ns)
    return str(first.args.get("priority", DEFAULT_PRIORITY))


def _register_op(op: Op) -> tuple[OpKind, str | None] | None:
    """(kind, value written or read) of one op on a parked task, None if it says nothing."""
    if op.f == "set-priority" and op.type != FAIL:
        return OpKind.PUT, str(op.args["priority"])
    if op.f not in _READS or op.type == INFO:
        return None
    if op.type == FAIL:
        return (OpKind.GET, None) if _not_found(op) else None
    if "priority" not in op.result:
        return None
    return OpKind.GET, str(op.result["priority"])


def _not_found(op: Op) -> bool:
    error = (op.error or "").lower()
    return not error or "404" in error or "not found" in error or "no task" in error


def _ranks(entries: Sequence[tuple[Op, OpKind, str | None]]) -> dict[int, int]:
    times = sorted({t for op, _, _ in entries for t in (op.invoke_ns, op.complete_ns)})
    return {t: i for i, t in enumerate(times)}


def _state_reads(ops: Sequence[Op], parked: set[str]) -> dict[str, list[Op]]:
    reads: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        if op.f in _READS and op.type == OK and "status" in op.result:
            task_id = str(op.args.get("task_id") or op.result.get("task_id"))
            if task_id not in parked:
                reads[task_id].append(op)
    return reads


def _rank(op: Op) -> tuple[int, int]:
    status = str(op.result["status"])
    level = 2 if status in TERMINAL else 0 if status == "pending" else 1
    return int(op.result.get("attempt", op.result.get("attempts", 0)) or 0), level


def _monotonic(task_id: str, reads: Sequence[Op]) -> Iterator[str]:
    """Sweep reads by invocation over reads by completion (n log n), keeping the highest
    (attempts, rank) and the first terminal read among those completed before."""
    by_end = sorted(reads, key=lambda o: o.complete_ns)
    ends = [o.complete_ns for o in by_end]
    top: Op | None = None
    terminal: Op | None = None
    done = 0
    for op in sorted(reads, key=lambda o: o.invoke_ns):
        before = bisect.bisect_left(ends, op.invoke_ns)
        for prior in by_end[done:before]:
            if top is None or _rank(prior) > _rank(top):
                top = prior
            if terminal is None and _rank(prior)[1] == 2:
                terminal = prior
        done = max(done, before)
        if terminal is not None and _shown(op) != _shown(terminal):
            yield (
                f"task {task_id} read {_shown(op)} by {op_line(op)} after it read "
                f"{_shown(terminal)} (terminal) by {op_line(terminal)}"
            )
        elif top is not None and _rank(op) < _rank(top):
            yield (
                f"task {task_id} went back: read {_shown(op)} by {op_line(op)} after "
                f"{_shown(top)} by {op_line(top)}"
            )


def _shown(op: Op) -> tuple[int, str]:
    return _rank(op)[0], str(op.result["status"])
