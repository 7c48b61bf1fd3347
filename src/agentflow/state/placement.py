"""Placement policy: which queued task goes to which worker. Pure: reads state, returns pairs.

It lives in ``state`` because the state machine runs it while applying (a submit that finds a
free slot, a report that frees one, is placed in its own entry: see ``StateMachine.apply``);
the leader's scheduler loop runs the same pass (``agentflow.scheduler.placement`` re-exports
it) for whatever that leaves. It reads only replicated state, so every replica that runs it
on the same entry computes the same plan.

A worker is eligible for a task when it is live, not draining, in the task's group, carries
every label the task asks for, has room for one more attempt (slots plus prefetch) and has the
free CPU, memory, GPUs and custom resources the task needs. Among eligible workers the least
loaded wins: load is the largest fraction of any resource in use (attempt capacity included);
ties go to fewer attempts held, then to the smaller id. Reservations are derived from the
attempts each worker holds, so they are exact by construction and released on every ending.

A task sent by value (a pickled call) goes only to workers started with
``--allow-pickled-functions``.

A task that no registered worker of its group could ever run, even idle, is reported as
unschedulable with the reason, instead of waiting silently.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentflow.byvalue import NEEDS_WORKER_REASON
from agentflow.state.records import TaskRecord, TaskStatus, WorkerRecord, WorkerState

if TYPE_CHECKING:
    from agentflow.state.machine import StateMachine

__all__ = [
    "Plan",
    "Room",
    "Swap",
    "fits",
    "plan_assignments",
    "plan_inline",
    "plan_pass",
    "plan_withdrawal",
    "unschedulable_reason",
]

MAX_SCAN = 10_000  # queued tasks looked at per group and pass
# Per group, inline with an entry: every replica pays it on every placing entry, so it is kept
# short; a task further down that could run waits for the scheduler loop's next pass.
INLINE_MAX_SCAN = 64
INLINE_MAX_ASSIGNMENTS = 1024
INLINE_MAX_WITHDRAWALS = 16  # queued attempts taken back per entry for more urgent work

# What a task asks of a worker beyond room: labels, resources, running calls sent by value.
_Needs = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, float], ...], bool, bool]
NEEDS_GIT_REASON = "needs a worker with git workspaces (git >= 2.38)"


@dataclass(slots=True)
class Room:
    """What one worker has in use during a pass (updated as the pass assigns)."""

    worker: WorkerRecord
    held: int
    reserved: dict[str, float] = field(default_factory=dict)

    def load(self) -> float:
        fractions = [self.held / self.worker.capacity if self.worker.capacity else 1.0]
        for name, total in self.worker.resources.items():
            if total > 0:
                fractions.append(self.reserved.get(name, 0.0) / total)
        return max(fractions)

    def key(self) -> tuple[float, int, str]:
        return (self.load(), self.held, self.worker.id)

    def take(self, needs: dict[str, float]) -> None:
        self.held += 1
        for name, amount in needs.items():
            self.reserved[name] = self.reserved.get(name, 0.0) + amount


def _by_git(task: TaskRecord) -> bool:
    """The task needs a worker with git workspaces: it has a workspace or is a merge step."""
    return task.spec.workspace is not None or task.spec.merge is not None


def fits(room: Room, task: TaskRecord) -> bool:
    worker = room.worker
    if room.held >= worker.capacity:
        return False
    if any(worker.labels.get(k) != v for k, v in task.labels.items()):
        return False
    if task.spec.pickled is not None and not worker.pickled_functions:
        return False
    if not worker.workspaces and _by_git(task):
        return False
    for name, amount in task.resources.items():
        if amount > worker.resources.get(name, 0.0) - room.reserved.get(name, 0.0) + 1e-9:
            return False
    return True


def unschedulable_reason(sm: StateMachine, task: TaskRecord) -> str | None:
    """Why no registered worker of the task's group could ever run it, or None if one could."""
    group = [
        w for w in sm.workers.values() if w.group == task.group and w.state is not WorkerState.LOST
    ]
    if not group:
        return None  # nobody registered yet: it waits for workers, as any task does
    labelled = [w for w in group if all(w.labels.get(k) == v for k, v in task.labels.items())]
    if not labelled:
        wanted = ",".join(f"{k}={v}" for k, v in sorted(task.labels.items()))
        return f"needs labels {wanted}; no worker in group {task.group!r} has them"
    if task.spec.pickled is not None:
        labelled = [w for w in labelled if w.pickled_functions]
        if not labelled:
            return f"{NEEDS_WORKER_REASON}; no worker in group {task.group!r} has it"
    if _by_git(task):
        labelled = [w for w in labelled if w.workspaces]
        if not labelled:
            return f"{NEEDS_GIT_REASON}; no worker in group {task.group!r} has them"
    for name, amount in sorted(task.resources.items()):
        largest = max(w.resources.get(name, 0.0) for w in labelled)
        if amount > largest + 1e-9:
            return f"needs {name}={amount:g}; largest worker has {name}={largest:g}"
    return None


@dataclass(slots=True)
class Plan:
    assignments: list[tuple[str, str]] = field(default_factory=list)
    unschedulable: dict[str, str | None] = field(default_factory=dict)  # only changes


def plan_pass(sm: StateMachine, *, max_assignments: int = 4096, max_scan: int = MAX_SCAN) -> Plan:
    """One scheduling pass: assignments best task first, and unschedulable reasons to change."""
    plan = Plan()
    if not len(sm.tasks.ready):
        return plan
    rooms: dict[str, list[Room]] = {}
    for worker in sm.workers.values():
        if worker.live and not worker.draining and worker.free_capacity > 0:
            rooms.setdefault(worker.group, []).append(
                Room(worker=worker, held=len(worker.running), reserved=sm.tasks.reserved_by(worker))
            )
    for group in sm.tasks.ready.groups():
        if group in rooms:
            _plan_group(
                sm, group, rooms[group], plan, max_assignments=max_assignments, max_scan=max_scan
            )
    return plan


def plan_inline(sm: StateMachine) -> list[tuple[str, str]]:
    """What to assign inline with the entry being applied: the same policy as a scheduler
    pass, over a shorter scan; unschedulable reasons are left to the scheduler loop."""
    return plan_pass(
        sm, max_assignments=INLINE_MAX_ASSIGNMENTS, max_scan=INLINE_MAX_SCAN
    ).assignments


def _plan_group(
    sm: StateMachine,
    group: str,
    rooms: list[Room],
    plan: Plan,
    *,
    max_assignments: int,
    max_scan: int,
) -> None:
    heap = [(room.key(), i) for i, room in enumerate(rooms) if room.held < room.worker.capacity]
    heapq.heapify(heap)
    # Tasks mostly share a few requirement sets: judge each set once per pass.
    reasons: dict[_Needs, str | None] = {}
    for scanned, task_id in enumerate(sm.tasks.ready.ordered(group)):
        if scanned >= max_scan or len(plan.assignments) >= max_assignments or not heap:
            # No worker has room: the rest of the queue waits (and is judged) for a later pass.
            return
        task = sm.tasks[task_id]
        reason = None
        by_value = task.spec.pickled is not None
        by_git = _by_git(task)
        if task.resources or task.labels or by_value or by_git:
            needs = (
                tuple(sorted(task.labels.items())),
                tuple(sorted(task.resources.items())),
                by_value,
                by_git,
            )
            if needs not in reasons:
                reasons[needs] = unschedulable_reason(sm, task)
            reason = reasons[needs]
        if reason != task.unschedulable:
            plan.unschedulable[task_id] = reason
        if reason is not None:
            continue
        skipped = []
        while heap:
            key, i = heapq.heappop(heap)
            if fits(rooms[i], task):
                rooms[i].take(task.resources)
                plan.assignments.append((task_id, rooms[i].worker.id))
                if rooms[i].held < rooms[i].worker.capacity:
                    heapq.heappush(heap, (rooms[i].key(), i))
                break
            skipped.append((key, i))
        for entry in skipped:
            heapq.heappush(heap, entry)


def plan_assignments(sm: StateMachine, *, max_assignments: int = 4096) -> list[tuple[str, str]]:
    """The assignments one scheduling pass should propose, best task first."""
    return plan_pass(sm, max_assignments=max_assignments).assignments


@dataclass(frozen=True, slots=True)
class Swap:
    """Withdraw ``withdrawn`` (queued, unstarted) from ``worker_id`` and give it ``task_id``."""

    withdrawn: str
    task_id: str
    worker_id: str


def plan_withdrawal(sm: StateMachine, index: int) -> Swap | None:
    """A waiting task more urgent than an attempt queued on a worker that it could replace.

    For each group, the best waiting task is compared with the least urgent attempt that a
    worker of the group holds beyond its slots and has not been heard starting (not assigned
    by the entry at ``index`` itself). It takes that attempt's place when its static key is
    strictly better and it fits on that worker once the attempt is gone. Running attempts are
    never taken back.
    """
    policy = sm.tasks.policy
    for group in sm.tasks.ready.groups():
        best = next(iter(sm.tasks.ready.ordered(group)), None)
        if best is None:
            continue
        task = sm.tasks[best]
        key = policy.static_key(task.priority, task.enqueued_at, task.retries)
        victim: tuple[float, str, WorkerRecord] | None = None
        for worker in sm.workers.values():
            if worker.group != group or not worker.live or worker.draining:
                continue
            if len(worker.running) <= worker.slots:
                continue  # nothing of it waits on the worker
            for held_id, token in worker.running.items():
                held = sm.tasks.get(held_id)  # a cancelled one may be evicted before its kill
                if held is None or held.status is not TaskStatus.ASSIGNED or token == index:
                    continue
                if held.fencing_token != token or held.worker_id != worker.id:
                    continue  # not this worker's live attempt
                held_key = policy.static_key(held.priority, held.enqueued_at, held.retries)
                if held_key > key and (victim is None or held_key > victim[0]):
                    victim = (held_key, held_id, worker)
        if victim is None:
            continue
        _, held_id, worker = victim
        reserved = sm.tasks.reserved_by(worker)
        for name, amount in sm.tasks[held_id].resources.items():
            reserved[name] = reserved.get(name, 0.0) - amount
        if fits(Room(worker=worker, held=len(worker.running) - 1, reserved=reserved), task):
            return Swap(withdrawn=held_id, task_id=best, worker_id=worker.id)
    return None
