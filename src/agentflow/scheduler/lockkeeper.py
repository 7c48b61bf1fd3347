"""The leader's lock clock: the only place a lease's expiry is decided.

On taking leadership the keeper first commits ``RearmLocks`` (every grant gets its full TTL from
the new leader's clock, so no lease ends early because the old leader's clock ran ahead, or
because renewals were lost in the failover); then it sleeps until the earliest expiry, wait
deadline or lock-delay and commits ``ExpireLocks`` with the time it read. The state machine
ends only what is due at that time, so expiry is never early. The decision is the pure
:func:`agentflow.scheduler.timers.lock_commands` (the simulator runs it too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from agentflow.errors import AgentFlowError
from agentflow.scheduler.loop import cancel_requested
from agentflow.scheduler.timers import lock_commands
from agentflow.state.commandlog import CommandLog
from agentflow.state.events import Event, LockChanged

__all__ = ["LockKeeper"]

log = logging.getLogger(__name__)

_NEW_DEADLINES = ("granted", "waiting")


class LockKeeper:
    def __init__(self, log_: CommandLog, clock_ms: Callable[[], int], tick_s: float = 1.0) -> None:
        self._log = log_
        self._now_ms = clock_ms
        self._tick_s = tick_s
        self._wake = asyncio.Event()
        self._armed = False
        log_.subscribe(self._on_events)

    def rearm(self) -> None:
        """Leadership changed: re-arm every grant before deciding any expiry."""
        self._armed = False
        self._wake.set()

    def _on_events(self, events: list[Event]) -> None:
        # A grant or a wait may bring the next deadline forward.
        if any(isinstance(e, LockChanged) and e.kind in _NEW_DEADLINES for e in events):
            self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._timeout_s())
            if cancel_requested():
                raise asyncio.CancelledError
            self._wake.clear()
            try:
                await self._pass()
            except AgentFlowError as exc:
                log.info("lock expiry pass refused: %s", exc)
                await asyncio.sleep(self._tick_s / 4)

    def _timeout_s(self) -> float:
        due = self._log.machine.locks.next_deadline_ms()
        if due is None or not self._armed:
            return self._tick_s
        return min(self._tick_s, max(0.0, (due - self._now_ms()) / 1000.0))

    async def _pass(self) -> None:
        if not self._log.is_leader:
            self._armed = False
            return
        if not self._armed:
            for command in lock_commands(self._log.machine.locks, self._now_ms(), armed=False):
                await self._log.propose(command)
            self._armed = True
        for command in lock_commands(self._log.machine.locks, self._now_ms(), armed=True):
            await self._log.propose(command)
