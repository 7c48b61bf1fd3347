"""The I/O-free core of one wait on many tasks (``gather``, ``as_completed``, ``wait_many``,
``wait``), shared by the sync and async clients (:mod:`agentflow.client._waits`).

A :class:`TaskWait` is fed what the wait's sink hears (:meth:`TaskWait.heard`) and says what it
means: a task's end to hand out, a task whose end must be read over HTTP (:class:`Fetch`), the
error that ends the wait, or nothing. The clients only move bytes and read the clock: they
watch what :meth:`TaskWait.more` names, pass each :class:`~agentflow.client._events.Ended` on,
and without the socket long-poll :meth:`TaskWait.polls` one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from agentflow.client._core import TaskInfo
from agentflow.client._events import WATCH_MAX, Ended
from agentflow.client._functions import value_of
from agentflow.errors import ForbiddenError, TaskFailedError, TimeoutExpiredError

__all__ = ["Fetch", "TaskWait", "gathered", "outcome_only", "whole"]


@dataclass(frozen=True, slots=True)
class Fetch:
    """The task ended but its outcome did not come with the event: read it over HTTP and give
    it to :meth:`TaskWait.fetched`."""

    task_id: str


class TaskWait:
    """The tasks of one wait: watched at most :data:`WATCH_MAX` at once, in order; which have
    ended; what each event heard means."""

    def __init__(self, ids: Iterable[str], timeout_s: float | None) -> None:
        self.ids = list(dict.fromkeys(ids))
        self.timeout_s = timeout_s
        self.next = 0
        self.waiting: set[str] = set()

    @property
    def done(self) -> bool:
        return not self.waiting and self.next >= len(self.ids)

    def more(self) -> list[str]:
        """The tasks to start watching now."""
        room = WATCH_MAX - len(self.waiting)
        chunk = self.ids[self.next : self.next + max(0, room)]
        self.next += len(chunk)
        self.waiting.update(chunk)
        return chunk

    def heard(self, ended: Ended, usable: bool) -> TaskInfo | Fetch | None:
        """What ``ended`` means to this wait: the task's end, a :class:`Fetch`, or None (not
        this wait's, or the socket was refused: the long polls take over). An error that ends
        the wait is raised."""
        if ended.task_id not in self.waiting:
            return None
        if ended.error is not None:
            if isinstance(ended.error, ForbiddenError) and not usable:
                return None
            raise ended.error
        if ended.info is None:  # a task the master did not know, or its outcome is gone
            return Fetch(ended.task_id)
        return self.fetched(ended.info)

    def fetched(self, info: TaskInfo) -> TaskInfo | None:
        """The task's end, once ``info`` (read over HTTP, or heard) says it ended."""
        if not info.done:
            return None
        self.waiting.discard(info.id)
        return info

    def polls(self) -> list[str]:
        """Without the socket: the tasks still to wait for, each by one long poll, in order.
        They count as watched from now on."""
        rest = sorted(self.waiting) + self.ids[self.next :]
        self.waiting.update(rest)
        self.next = len(self.ids)
        return rest

    def polled(self, info: TaskInfo) -> TaskInfo:
        """A long poll's answer: the task's end, or :class:`TimeoutExpiredError`."""
        if self.fetched(info) is None:
            raise self.timed_out(1)
        return info

    def timed_out(self, left: int | None = None) -> TimeoutExpiredError:
        count = len(self.waiting) if left is None else left
        return TimeoutExpiredError(f"{count} task(s) still running after {self.timeout_s}s")


def gathered(ids: list[str], infos: Iterable[TaskInfo], return_exceptions: bool) -> list[Any]:
    """``gather``'s answer: each task's value (or failure) in the order of ``ids``."""
    values: dict[str, Any] = {}
    for info in infos:
        try:
            values[info.id] = value_of(info)
        except TaskFailedError as exc:
            if not return_exceptions:
                raise
            values[info.id] = exc
    return [values[i] for i in ids]


def outcome_only(info: TaskInfo) -> bool:
    """Whether ``info`` is an end heard as an event, which carries the outcome only (status,
    exit code, reason, result), not the task's full record."""
    return info.done and "task_id" in info.raw


def whole(heard: TaskInfo, full: TaskInfo) -> TaskInfo:
    """The full record read after hearing the end; the end heard where the master read from
    has not applied it yet."""
    return full if full.done else heard
