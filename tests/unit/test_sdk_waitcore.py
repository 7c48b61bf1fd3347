"""The sans-I/O core of the SDK's waits (:class:`TaskWait`): fed what a wait's sink hears, it
says what is done and what to do next, for the sync and async clients alike."""

from __future__ import annotations

import pytest

from agentflow.client._core import TaskInfo
from agentflow.client._events import WATCH_MAX, Ended, task_info
from agentflow.client._waitcore import Fetch, TaskWait, gathered, outcome_only, whole
from agentflow.errors import ForbiddenError, TaskFailedError, TimeoutExpiredError, UnavailableError


def end(task_id: str, status: str = "completed") -> Ended:
    event = {"task_id": task_id, "status": status, "result": "7", "result_format": "json"}
    return Ended(task_id, info=task_info(event))


def test_ends_are_handed_out_once_each_and_the_wait_is_done_after_the_last() -> None:
    wait = TaskWait(["a", "b", "a"], timeout_s=5)
    assert wait.more() == ["a", "b"] and wait.more() == []  # each task once
    assert wait.heard(end("zz"), usable=True) is None  # not this wait's
    first = wait.heard(end("b"), usable=True)
    assert isinstance(first, TaskInfo) and first.id == "b" and not wait.done
    assert wait.heard(end("b"), usable=True) is None  # heard again: already handed out
    assert wait.heard(end("a", "failed"), usable=True) is not None and wait.done


def test_at_most_watch_max_tasks_are_watched_at_once() -> None:
    wait = TaskWait([str(i) for i in range(WATCH_MAX + 3)], timeout_s=None)
    assert len(wait.more()) == WATCH_MAX
    wait.heard(end("0"), usable=True)
    assert wait.more() == [str(WATCH_MAX)]


def test_an_end_without_its_outcome_is_read_and_a_running_one_waited_for() -> None:
    wait = TaskWait(["a"], timeout_s=5)
    wait.more()
    assert wait.heard(Ended("a"), usable=True) == Fetch("a")
    assert wait.fetched(TaskInfo(id="a", status="running")) is None and not wait.done
    assert wait.fetched(TaskInfo(id="a", status="completed")) is not None and wait.done


def test_errors_end_the_wait_unless_the_socket_was_refused() -> None:
    wait = TaskWait(["a"], timeout_s=5)
    wait.more()
    refused = Ended("a", error=ForbiddenError("no"))
    assert wait.heard(refused, usable=False) is None  # the long polls take over
    with pytest.raises(ForbiddenError):
        wait.heard(refused, usable=True)
    with pytest.raises(UnavailableError):
        wait.heard(Ended("a", error=UnavailableError("gone")), usable=False)


def test_long_polls_take_the_rest_in_order_and_time_out_on_a_running_task() -> None:
    wait = TaskWait(["a", "b", "c"], timeout_s=2)
    wait.more()
    wait.heard(end("a"), usable=True)
    assert wait.polls() == ["b", "c"]
    assert wait.polled(TaskInfo(id="b", status="completed")).id == "b"
    with pytest.raises(TimeoutExpiredError, match="after 2s"):
        wait.polled(TaskInfo(id="c", status="running"))
    assert str(wait.timed_out()).startswith("1 task(s)")


def test_gathered_in_order_with_failures_raised_or_kept() -> None:
    infos = [end("b").info, end("a", "failed").info]
    assert all(infos)
    with pytest.raises(TaskFailedError):
        gathered(["a", "b"], [i for i in infos if i], return_exceptions=False)
    a, b = gathered(["a", "b"], [i for i in infos if i], return_exceptions=True)
    assert isinstance(a, TaskFailedError) and b == 7


def test_an_end_heard_as_an_event_is_completed_by_the_full_record() -> None:
    heard = end("a").info
    assert heard is not None and outcome_only(heard)
    full = TaskInfo.from_json({"id": "a", "status": "completed", "title": "t", "attempts": 1})
    assert not outcome_only(full) and whole(heard, full) is full
    lagging = TaskInfo.from_json({"id": "a", "status": "running"})
    assert whole(heard, lagging) is heard
