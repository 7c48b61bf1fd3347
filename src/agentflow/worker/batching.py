"""Which queued Python calls go to a free runner together, and the batches that run.

When a slot frees for a Python call and more Python calls wait in the worker's queue, up to
``runner_batch`` of them (no more than the slot's share of the queue, so the other slots are
not left idle) leave the queue in priority order and go to one runner in one message
(:class:`~agentflow.worker.pyexec.CallBatch`). A batch holds its slot until its last call is
settled. An attempt that arrives more urgent than a batch's calls not started yet makes them
yield: they are stopped and go back to the queue, behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agentflow.worker.backlog import Backlog
from agentflow.worker.executor import Attempt
from agentflow.worker.pyexec import CallBatch, FunctionAttempt, PythonPool, Settled, Unstarted

__all__ = ["Batches"]

log = logging.getLogger(__name__)


class Batches:
    """The worker's running batches, and the rule that forms new ones."""

    def __init__(
        self,
        *,
        limit: int,
        slots: int,
        pool: Callable[[], PythonPool],
        started: Callable[[str, int], None],
        settled: Settled,
        unstarted: Unstarted,
    ) -> None:
        self._limit = limit  # calls per message at most; 1: never batch
        self._slots = slots
        self._pool = pool
        self._started = started
        self._settled = settled
        self._unstarted = unstarted
        self._running: set[CallBatch] = set()

    def form(
        self, attempt: Attempt | FunctionAttempt, backlog: Backlog[Attempt | FunctionAttempt]
    ) -> CallBatch | None:
        """``attempt`` (just given a slot) with queued Python calls after it, or None when
        it goes alone."""
        room = min(self._limit - 1, len(backlog) // self._slots)
        if room < 1 or not isinstance(attempt, FunctionAttempt) or not attempt.batchable:
            return None
        calls = [attempt]
        while len(calls) <= room:
            head = backlog.peek()
            if not isinstance(head, FunctionAttempt) or not head.batchable:
                break
            backlog.pop()
            calls.append(head)
        if len(calls) == 1:
            return None
        return CallBatch(
            self._pool(),
            calls,
            started=lambda a: self._started(a.task_id, a.token),
            settled=self._settled,
            unstarted=self._unstarted,
        )

    async def run(self, batch: CallBatch) -> None:
        self._running.add(batch)
        try:
            await batch.run()
        except Exception as exc:  # a bug here must not take the whole worker down
            log.exception("a batch of Python calls crashed")
            batch.abandon(f"worker error: {exc}")
        finally:
            self._running.discard(batch)

    def yield_to(self, order: float) -> None:
        """A new attempt with key ``order`` waits: no batch's call not started and less
        urgent may run before it."""
        stopped = sum(batch.yield_to(order) for batch in self._running)
        if stopped:
            log.info("%d Python call(s) of a batch yield to a more urgent attempt", stopped)
