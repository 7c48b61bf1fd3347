"""The leader's control loop: turn state and the clock into commands.

One coroutine, woken by applied events (new queued tasks, freed slots, workers joining) or a
timer. Most work is placed inline, by the entry that submits it or frees its slot (see
``StateMachine.place``); this loop catches the rest (a worker joining, a backoff ending, a
task beyond the inline scan) and proposes ``AssignTasks`` from the same placement policy,
``ReleaseDueTasks`` when a retry backoff has passed, and ``MarkWorkersLost`` for workers
silent past the loss timeout. Worker liveness is tracked here, in memory, from session
traffic; after a leader change every worker gets a full loss timeout again (never declared
lost early).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from agentflow.errors import AgentFlowError
from agentflow.scheduler.placement import plan_pass
from agentflow.state.commandlog import CommandLog
from agentflow.state.commands import (
    AssignTasks,
    DeregisterWorker,
    MarkWorkersLost,
    ReleaseDueTasks,
    SetUnschedulable,
)
from agentflow.state.events import Event, TaskChanged, TasksQueued, WorkerChanged
from agentflow.state.records import WorkerState

__all__ = ["Scheduler", "SchedulerConfig", "cancel_requested"]

log = logging.getLogger(__name__)


def cancel_requested() -> bool:
    """Whether this task was asked to end. On 3.11, ``wait_for`` returns normally when a cancel
    lands as the awaited event is set, and the loop would go on for ever (a shutdown hung)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerConfig:
    worker_loss_timeout_s: float = 30.0
    lost_worker_retention_s: float = 3600.0  # then a lost worker leaves the registry
    tick_s: float = 1.0
    max_assignments_per_pass: int = 4096


class Scheduler:
    def __init__(
        self, log_: CommandLog, clock_ms: Callable[[], int], config: SchedulerConfig
    ) -> None:
        self._log = log_
        self._now_ms = clock_ms
        self._config = config
        self._wake = asyncio.Event()
        self._last_contact: dict[str, int] = {}
        self._armed_at = clock_ms()
        log_.subscribe(self._on_events)

    def rearm(self) -> None:
        """Leadership changed: every worker gets a full loss timeout from now, never less."""
        self._armed_at = self._now_ms()
        self._last_contact.clear()
        self._wake.set()

    def touch(self, worker_id: str) -> None:
        """A worker was heard from (any session frame)."""
        self._last_contact[worker_id] = self._now_ms()

    def last_contact_ms(self, worker_id: str) -> int | None:
        return self._last_contact.get(worker_id)

    def lost_in_ms(self, worker_id: str) -> int:
        """How long until a silent worker is declared lost (0: at the next pass)."""
        heard = max(self._last_contact.get(worker_id, 0), self._armed_at)
        limit_ms = int(self._config.worker_loss_timeout_s * 1000)
        return max(0, heard + limit_ms - self._now_ms())

    def poke(self) -> None:
        self._wake.set()

    def _on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TaskChanged | TasksQueued | WorkerChanged):
                self._wake.set()
                return

    async def run(self) -> None:
        """Run until cancelled. Errors in one pass are logged; the loop goes on."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_timeout_s())
            if cancel_requested():
                raise asyncio.CancelledError
            self._wake.clear()
            try:
                await self._pass()
            except AgentFlowError as exc:
                log.warning("scheduling pass refused: %s", exc)

    def _next_timeout_s(self) -> float:
        timeout = self._config.tick_s
        due = self._log.machine.next_due_ms()
        if due is not None:
            timeout = min(timeout, max(0.0, (due - self._now_ms()) / 1000.0))
        return timeout

    async def _pass(self) -> None:
        if not self._log.is_leader:
            return
        sm = self._log.machine
        now = self._now_ms()
        due = sm.next_due_ms()
        if due is not None and due <= now:
            await self._log.propose(ReleaseDueTasks(now_ms=now))
        lost = self._silent_workers(now)
        if lost:
            log.warning("workers lost (silent > %ss): %s", self._config.worker_loss_timeout_s, lost)
            await self._log.propose(MarkWorkersLost(now_ms=now, worker_ids=lost))
        retention_ms = int(self._config.lost_worker_retention_s * 1000)
        expired = [
            w.id
            for w in sm.workers.values()
            if w.state is WorkerState.LOST
            and w.lost_at is not None
            and now - w.lost_at > retention_ms
        ]
        for worker_id in expired:  # lost long enough: leave the registry, history kept
            await self._log.propose(DeregisterWorker(now_ms=now, worker_id=worker_id, force=True))
        plan = plan_pass(sm, max_assignments=self._config.max_assignments_per_pass)
        if plan.unschedulable:
            await self._log.propose(
                SetUnschedulable(now_ms=self._now_ms(), reasons=plan.unschedulable)
            )
        if plan.assignments:
            await self._log.propose(
                AssignTasks(now_ms=self._now_ms(), assignments=plan.assignments)
            )

    def _silent_workers(self, now: int) -> list[str]:
        limit_ms = int(self._config.worker_loss_timeout_s * 1000)
        silent = []
        for worker in self._log.machine.workers.values():
            if worker.state is WorkerState.LOST:
                continue
            heard = max(self._last_contact.get(worker.id, 0), self._armed_at)
            if now - heard > limit_ms:
                silent.append(worker.id)
        return silent
