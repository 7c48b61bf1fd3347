"""Every acknowledged task ends, by its own rule, and never vanishes; one key makes one task.

The tasks the system acknowledged are the task ids of ``ok`` submits and ``ok`` workflows.
Each must have a `final-task` read after healing (a read that failed, 404, means the task
vanished) showing the terminal status its rule allows:

- ``ok``, ``slow``, ``fail-once`` → ``completed``; ``fail-always`` → ``failed``;
- ``cancelled`` too when a `cancel` of it was invoked and may have taken effect (``ok`` or
  ``info``);
- a workflow task may also be ``upstream_failed`` when another task of its workflow ended
  failed, cancelled or upstream_failed (the product fails the dependents of such a task);
- a parked task (group ``parked``, never run) stays ``queued`` (or ``cancelled`` as above).

A workflow's task rules come from its args' ``rules`` ({name: rule}; ``ok`` by default).
Submits that ended ``info`` may or may not have made a task: a `final-task` read by their
idempotency key that found one holds that task to the same rules. Two ``ok`` submits with one
idempotency key must name one task id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from agentflow.testing.chaos.checkers.common import (
    CheckerResult,
    FinalReads,
    final_reads,
    is_parked,
    op_line,
)
from agentflow.testing.chaos.history import FAIL, INFO, OK, Op, StorageRecord

__all__ = ["RULE_STATUS", "check_tasks"]

NAME = "tasks"
RULE_STATUS: Mapping[str, str] = {
    "ok": "completed",
    "slow": "completed",
    "fail-once": "completed",
    "fail-always": "failed",
    "parked": "queued",
}
_DEPENDENT_FAILED = frozenset({"failed", "cancelled", "upstream_failed", "timed_out"})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Expected:
    task_id: str
    rule: str
    op: Op  # the submit or workflow that made it
    workflow_id: str | None = None
    acknowledged: bool = True  # False: learned only from an info submit's key


def check_tasks(ops: Sequence[Op], storage: Sequence[StorageRecord] = ()) -> CheckerResult:
    finals = final_reads(ops)
    cancelled = {
        str(op.args.get("task_id")) for op in ops if op.f == "cancel" and op.type in (OK, INFO)
    }
    expected = dict(_expected(ops, finals))
    by_workflow: dict[str, list[str]] = defaultdict(list)
    for exp in expected.values():
        if exp.workflow_id is not None:
            by_workflow[exp.workflow_id].append(exp.task_id)
    anomalies = list(_key_anomalies(ops, finals))
    statuses: Counter[str] = Counter()
    for exp in expected.values():
        status = finals.status(exp.task_id)
        statuses[status or "unread"] += 1
        siblings = by_workflow.get(exp.workflow_id or "", [])
        line = _judge(exp, finals, status, exp.task_id in cancelled, siblings)
        if line is not None:
            anomalies.append(line)
    stats = {
        "acknowledged_tasks": sum(e.acknowledged for e in expected.values()),
        "info_tasks_found": sum(not e.acknowledged for e in expected.values()),
        **{f"final_{s}": n for s, n in sorted(statuses.items())},
    }
    return CheckerResult.of(NAME, anomalies, stats)


def _expected(ops: Sequence[Op], finals: FinalReads) -> Iterator[tuple[str, _Expected]]:
    for op in ops:
        if op.f == "submit" and op.type == OK:
            task_id = str(op.result["task_id"])
            yield task_id, _Expected(task_id=task_id, rule=_rule(op), op=op)
        elif op.f == "workflow" and op.type == OK:
            rules = op.args.get("rules") or {}
            wf = str(op.result.get("workflow_id"))
            for name, task_id in dict(op.result.get("task_ids") or {}).items():
                rule = str(rules.get(name, "ok"))
                exp = _Expected(task_id=str(task_id), rule=rule, op=op, workflow_id=wf)
                yield str(task_id), exp
    acknowledged = {str(op.result["task_id"]) for op in ops if op.f == "submit" and op.type == OK}
    for op in ops:
        if op.f == "submit" and op.type == INFO:
            found = op.result.get("task_id") or finals.task_of_key.get(str(op.args.get("key")))
            if found is not None and str(found) not in acknowledged:
                exp = _Expected(task_id=str(found), rule=_rule(op), op=op, acknowledged=False)
                yield str(found), exp


def _rule(op: Op) -> str:
    return "parked" if is_parked(op) else str(op.args.get("rule", "ok"))


def _judge(
    exp: _Expected,
    finals: FinalReads,
    status: str | None,
    cancel_invoked: bool,
    siblings: Sequence[str],
) -> str | None:
    what = f"task {exp.task_id} (rule {exp.rule}, from {op_line(exp.op)})"
    read = finals.by_task.get(exp.task_id)
    if read is None:
        return f"{what}: no final-task read (the history cannot say how it ended)"
    lost = finals.failed.get(exp.task_id)
    if lost is not None:
        also = "" if read.type == FAIL else f" (another read found it: {op_line(read)})"
        return f"{what} vanished: its final read failed, {op_line(lost)}{also}"
    allowed = {RULE_STATUS.get(exp.rule, "completed")}
    if exp.rule == "parked":
        allowed.add("pending")
    if cancel_invoked:
        allowed.add("cancelled")
    if any(finals.status(t) in _DEPENDENT_FAILED for t in siblings if t != exp.task_id):
        allowed.add("upstream_failed")
    if status in allowed:
        return None
    return f"{what} ended {status}, rule allows {sorted(allowed)} ({op_line(read)})"


def _key_anomalies(ops: Sequence[Op], finals: FinalReads) -> Iterator[str]:
    by_key: dict[str, dict[str, Op]] = defaultdict(dict)
    workflows: dict[str, dict[str, Op]] = defaultdict(dict)
    for op in ops:
        if op.type != OK or op.args.get("key") is None:
            continue
        if op.f == "submit":
            by_key[str(op.args["key"])].setdefault(str(op.result["task_id"]), op)
        elif op.f == "workflow":
            workflows[str(op.args["key"])].setdefault(str(op.result.get("workflow_id")), op)
    for key, made_by in sorted(workflows.items()):
        if len(made_by) > 1:
            made = "; ".join(f"{w} by {op_line(op)}" for w, op in sorted(made_by.items()))
            yield f"idempotency key {key!r} made {len(made_by)} workflows: {made}"
    for key, made_by in sorted(by_key.items()):
        found = finals.task_of_key.get(key)
        tasks = dict(made_by)
        if found is not None and found not in tasks:
            tasks[found] = finals.by_task[found]
        if len(tasks) > 1:
            made = "; ".join(f"{t} by {op_line(op)}" for t, op in sorted(tasks.items()))
            yield f"idempotency key {key!r} made {len(tasks)} tasks: {made}"
