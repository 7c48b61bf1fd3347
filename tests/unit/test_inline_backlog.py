"""The worker's backlog starts queued attempts in the master's order (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass

from agentflow.worker.backlog import Backlog


@dataclass
class Held:
    task_id: str


def test_the_backlog_starts_the_most_urgent_first_and_ties_in_arrival_order() -> None:
    backlog: Backlog[Held] = Backlog()
    for task_id, order in (("low", -10.0), ("urgent-1", -900.0), ("urgent-2", -900.0)):
        backlog.push(Held(task_id), order)
    assert [backlog.pop().task_id for _ in range(3)] == ["urgent-1", "urgent-2", "low"]
    assert not backlog


def test_a_withdrawn_attempt_never_starts_and_a_new_attempt_of_it_does() -> None:
    backlog: Backlog[Held] = Backlog()
    backlog.push(Held("a"), 1.0)
    backlog.push(Held("b"), 2.0)
    assert backlog.remove("a") and not backlog.remove("a")
    assert "a" not in backlog and len(backlog) == 1
    backlog.push(Held("a"), 3.0)  # assigned again later: the stale entry stays dead
    assert [backlog.pop().task_id for _ in range(2)] == ["b", "a"]
