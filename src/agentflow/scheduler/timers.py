"""The leader's timer pass, pure: (state, now, liveness) -> the commands to propose.

The asyncio loops (:mod:`agentflow.scheduler.loop`, :mod:`agentflow.scheduler.lockkeeper`)
read the clock, call these and propose what they return, in order; the simulator calls the
same functions on its virtual clock. Nothing here reads a clock or does I/O: time is an
argument, and worker liveness (what the leader heard from whom, in memory) is a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agentflow.state import Command, StateMachine
from agentflow.state.commands import (
    AssignTasks,
    DeregisterWorker,
    ExpireLocks,
    MarkWorkersLost,
    RearmLocks,
    ReleaseDueTasks,
    SetUnschedulable,
)
from agentflow.state.locks import LockTable
from agentflow.state.placement import plan_pass
from agentflow.state.records import WorkerState

__all__ = [
    "Liveness",
    "SchedulerConfig",
    "due_commands",
    "lock_commands",
    "placement_commands",
    "silent_workers",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    worker_loss_timeout_s: float = 30.0
    lost_worker_retention_s: float = 3600.0  # then a lost worker leaves the registry
    tick_s: float = 1.0
    max_assignments_per_pass: int = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class Liveness:
    """What this leader heard from workers: ``armed_at_ms`` is when it took leadership (no
    worker is declared lost before a full timeout from then), ``last_contact_ms`` the last
    session frame of each worker since."""

    armed_at_ms: int
    last_contact_ms: Mapping[str, int] = field(default_factory=dict)


def silent_workers(
    sm: StateMachine, now_ms: int, liveness: Liveness, config: SchedulerConfig
) -> list[str]:
    """Workers not lost yet but silent past the loss timeout, in registry order."""
    limit_ms = int(config.worker_loss_timeout_s * 1000)
    silent = []
    for worker in sm.workers.values():
        if worker.state is WorkerState.LOST:
            continue
        # Its registration (or last session) counts as contact: a worker that registers
        # after the loss clock ran out is not declared lost before its session says a word.
        heard = max(
            liveness.last_contact_ms.get(worker.id, 0), liveness.armed_at_ms, worker.last_seen_at
        )
        if now_ms - heard > limit_ms:
            silent.append(worker.id)
    return silent


def due_commands(
    sm: StateMachine, now_ms: int, liveness: Liveness, config: SchedulerConfig
) -> list[Command]:
    """Backoffs that ended, workers silent too long, lost workers kept long enough."""
    commands: list[Command] = []
    due = sm.next_due_ms()
    if due is not None and due <= now_ms:
        commands.append(ReleaseDueTasks(now_ms=now_ms))
    lost = silent_workers(sm, now_ms, liveness, config)
    if lost:
        commands.append(MarkWorkersLost(now_ms=now_ms, worker_ids=lost))
    retention_ms = int(config.lost_worker_retention_s * 1000)
    commands.extend(
        DeregisterWorker(now_ms=now_ms, worker_id=w.id, force=True)
        for w in sm.workers.values()
        if w.state is WorkerState.LOST
        and w.lost_at is not None
        and now_ms - w.lost_at > retention_ms
    )
    return commands


def placement_commands(sm: StateMachine, now_ms: int, config: SchedulerConfig) -> list[Command]:
    """The placement pass: why tasks cannot run anywhere, and what to assign where."""
    plan = plan_pass(sm, max_assignments=config.max_assignments_per_pass)
    commands: list[Command] = []
    if plan.unschedulable:
        commands.append(SetUnschedulable(now_ms=now_ms, reasons=plan.unschedulable))
    if plan.assignments:
        commands.append(AssignTasks(now_ms=now_ms, assignments=plan.assignments))
    return commands


def lock_commands(locks: LockTable, now_ms: int, *, armed: bool) -> list[Command]:
    """A leader first re-arms every grant (``armed`` once that committed); then it expires
    what is due by ``now_ms``, never earlier."""
    if not armed:
        return [RearmLocks(now_ms=now_ms)]
    due = locks.next_deadline_ms()
    if due is not None and due <= now_ms:
        return [ExpireLocks(now_ms=now_ms)]
    return []
