"""The leader's control loop: turn state and the clock into commands.

One coroutine, woken by applied events (new queued tasks, freed slots, workers joining) or a
timer. The pass itself is pure (:mod:`agentflow.scheduler.timers`; the simulator runs it too).
Most work is placed inline, by the entry that submits it or frees its slot (see
``StateMachine.place``); this loop catches the rest (a worker joining, a backoff ending, a
task beyond the inline scan) and proposes ``AssignTasks`` from the same placement policy,
``ReleaseDueTasks`` when a retry backoff has passed, and ``MarkWorkersLost`` for workers
silent past the loss timeout, and ``FireSchedule`` for each schedule's fire time that passed
(:mod:`agentflow.scheduler.firing`). Worker liveness is tracked here, in memory, from session
traffic; after a leader change every worker gets a full loss timeout again (never declared
lost early).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from agentflow.errors import AgentFlowError
from agentflow.scheduler.firing import firing_commands, next_wake_ms
from agentflow.scheduler.timers import (
    Liveness,
    SchedulerConfig,
    due_commands,
    placement_commands,
)
from agentflow.state.commandlog import CommandLog
from agentflow.state.commands import MarkWorkersLost
from agentflow.state.events import Event, TaskChanged, TasksQueued, WorkerChanged

__all__ = ["Scheduler", "SchedulerConfig", "cancel_requested"]

log = logging.getLogger(__name__)


def cancel_requested() -> bool:
    """Whether this task was asked to end. On 3.11, ``wait_for`` returns normally when a cancel
    lands as the awaited event is set, and the loop would go on for ever (a shutdown hung)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


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
        # The earliest next fire time of the schedules, worked out again only when the table
        # changed (its version), so a pass woken by task traffic costs nothing for them.
        self._schedules_seen = -1
        self._schedules_wake_ms: int | None = None
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
        worker = self._log.machine.workers.get(worker_id)
        seen = worker.last_seen_at if worker is not None else 0
        heard = max(self._last_contact.get(worker_id, 0), self._armed_at, seen)
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
        for due in (self._log.machine.next_due_ms(), self._schedule_wake_ms()):
            if due is not None:
                timeout = min(timeout, max(0.0, (due - self._now_ms()) / 1000.0))
        return timeout

    def _schedule_wake_ms(self) -> int | None:
        table = self._log.machine.schedules
        if table.version != self._schedules_seen:
            self._schedules_seen = table.version
            self._schedules_wake_ms = next_wake_ms(table.values())
        return self._schedules_wake_ms

    async def fire_schedules(self) -> None:
        """Propose the fire times that passed, in order; each commits before the next."""
        wake = self._schedule_wake_ms()
        now = self._now_ms()
        if wake is None or wake > now:
            return
        table = self._log.machine.schedules
        for command in firing_commands(table.values(), now, table.limits):
            await self._log.propose(command)

    async def _pass(self) -> None:
        if not self._log.is_leader:
            return
        now = self._now_ms()
        liveness = Liveness(armed_at_ms=self._armed_at, last_contact_ms=self._last_contact)
        for command in due_commands(self._log.machine, now, liveness, self._config):
            if isinstance(command, MarkWorkersLost):
                log.warning(
                    "workers lost (silent > %ss): %s",
                    self._config.worker_loss_timeout_s,
                    command.worker_ids,
                )
            await self._log.propose(command)
        await self.fire_schedules()
        for command in placement_commands(self._log.machine, self._now_ms(), self._config):
            await self._log.propose(command)
