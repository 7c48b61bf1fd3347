"""Task latencies for ``/metrics``: queue wait and run time, by group and task kind.

Measured from the times the state machine already holds (stamped by the leader into the
commands that queued, started and finished each attempt), read by an event subscriber of the
master's shell, never inside ``apply``. Only the leader observes, so summing a histogram over
every master of a cluster counts each task once; a new leader observes from its election on.

Label cardinality is bounded: ``kind`` is one of :data:`TASK_KINDS`, ``status`` one of the
terminal statuses, and ``group`` (chosen by users) takes at most :data:`MAX_TASK_SERIES` label
sets per histogram; tasks of any group seen after that count under ``group="_other"``.
"""

from __future__ import annotations

from collections.abc import Callable

from agentflow.histograms import SLOW_BUCKETS_S, HistogramVec
from agentflow.state import StateMachine
from agentflow.state.events import Event, TaskChanged
from agentflow.state.records import TERMINAL_STATUSES, TaskRecord

__all__ = ["MAX_TASK_SERIES", "TASK_KINDS", "TaskTimings", "task_kind"]

MAX_TASK_SERIES = 64  # label sets per histogram; beyond, "_other"
TASK_KINDS = ("command", "args", "agent", "function", "noop")
_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


def task_kind(task: TaskRecord) -> str:
    """What the task runs, one of :data:`TASK_KINDS`."""
    spec = task.spec
    if task.noop:
        return "noop"
    if spec.function is not None or spec.pickled is not None:
        return "function"
    if spec.agent is not None:
        return "agent"
    return "args" if spec.args else "command"


class TaskTimings:
    """Histograms (seconds) of the tasks this master saw start and finish while leading."""

    def __init__(self, machine: StateMachine, is_leader: Callable[[], bool]) -> None:
        self._machine = machine
        self._is_leader = is_leader
        # From (re)queued until the attempt started on its worker.
        self.queue_wait = HistogramVec(
            ("group", "kind"), SLOW_BUCKETS_S, max_series=MAX_TASK_SERIES
        )
        # The last attempt, from its start on the worker until its outcome was committed.
        self.run = HistogramVec(
            ("group", "kind", "status"), SLOW_BUCKETS_S, max_series=MAX_TASK_SERIES
        )

    def on_events(self, events: list[Event]) -> None:
        if not self._is_leader():
            return
        peek = self._machine.tasks.peek
        for event in events:
            if type(event) is not TaskChanged:
                continue
            status = event.status
            if status == "running":
                task = peek(event.task_id)
                if task is not None and task.attempts:
                    started = task.attempts[-1].started_at
                    if started is not None:
                        wait_s = max(0, started - task.enqueued_at) / 1000.0
                        self.queue_wait.observe(wait_s, task.group, task_kind(task))
            elif status in _TERMINAL:
                task = peek(event.task_id)
                if task is not None and task.attempts:
                    attempt = task.attempts[-1]
                    if attempt.started_at is not None and attempt.finished_at is not None:
                        run_s = max(0, attempt.finished_at - attempt.started_at) / 1000.0
                        self.run.observe(run_s, task.group, task_kind(task), status)
