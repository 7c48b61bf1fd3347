"""A worker's short queue of attempts, and withdrawal for more urgent work (issue 14)."""

from __future__ import annotations

from agentflow.state.commands import ReportAttempts
from agentflow.state.events import AttemptWithdrawn, TaskAssigned
from agentflow.state.records import AUTO_QUEUE, QUEUE_PER_SLOT_MAX, TaskStatus
from tests.unit.test_inline_placement import Log


def test_an_urgent_task_takes_the_place_of_a_queued_low_one_in_its_own_entry() -> None:
    log = Log()
    log.worker("w1", slots=1, prefetch=1)
    log.submit("running", at_ms=0, priority="low")
    log.submit("queued-low", at_ms=1, priority="low")
    log.apply(ReportAttempts(now_ms=2, worker_id="w1", started=[("running", 2)]))
    low_token = log.sm.tasks["queued-low"].fencing_token
    log.sm.drain_events()

    log.submit("urgent", at_ms=3, priority="urgent")

    events = log.sm.drain_events()
    [withdrawn] = [e for e in events if isinstance(e, AttemptWithdrawn)]
    [assigned] = [e for e in events if isinstance(e, TaskAssigned)]
    assert (withdrawn.task_id, withdrawn.fencing_token) == ("queued-low", low_token)
    assert (assigned.task_id, assigned.fencing_token) == ("urgent", log.index)
    low = log.sm.tasks["queued-low"]
    assert low.status is TaskStatus.QUEUED and low.attempts[-1].status == "withdrawn"
    assert low.retries == 0 and low.enqueued_at == 1  # no retry spent, its age kept
    assert log.sm.tasks["running"].status is TaskStatus.RUNNING  # never taken back
    assert events.index(withdrawn) < events.index(assigned)  # the worker hears it first


def test_the_withdrawn_attempts_late_start_and_outcome_are_refused() -> None:
    log = Log()
    log.worker("w1", slots=1, prefetch=1)
    log.submit("running", at_ms=0)
    log.submit("queued-low", at_ms=1, priority="low")
    stale = log.sm.tasks["queued-low"].fencing_token
    assert stale is not None
    log.submit("urgent", at_ms=2, priority="urgent")
    log.finish("w1", "running", at_ms=3)  # frees the slot: queued-low is placed again
    low = log.sm.tasks["queued-low"]
    assert low.fencing_token is not None and low.fencing_token > stale
    fresh = low.fencing_token
    log.apply(ReportAttempts(now_ms=4, worker_id="w1", started=[("queued-low", stale)]))
    assert low.status is TaskStatus.ASSIGNED and low.attempts[-1].started_at is None
    assert low.fencing_token == fresh


def test_an_equal_or_less_urgent_task_never_withdraws() -> None:
    log = Log()
    log.worker("w1", slots=1, prefetch=1)
    log.submit("a", at_ms=0)
    log.submit("b", at_ms=1)
    log.sm.drain_events()
    log.submit("c", at_ms=2)  # same level, later: waits
    assert not [e for e in log.sm.drain_events() if isinstance(e, AttemptWithdrawn)]
    assert log.sm.tasks["c"].status is TaskStatus.QUEUED


def test_without_a_queue_nothing_is_withdrawn() -> None:
    log = Log()
    log.worker("w1", slots=1, prefetch=0)
    log.submit("low", at_ms=0, priority="low")
    log.submit("urgent", at_ms=1, priority="urgent")
    assert log.sm.tasks["low"].status is TaskStatus.ASSIGNED  # it may be running: kept
    assert log.sm.tasks["urgent"].status is TaskStatus.QUEUED


def test_the_automatic_queue_is_deep_for_short_tasks_and_empty_for_long_ones() -> None:
    log = Log()
    log.worker("w1", slots=2, prefetch=AUTO_QUEUE)
    worker = log.sm.workers["w1"]
    assert worker.queue_depth == 2  # one per slot before anything is measured
    log.submit("quick", at_ms=0)
    log.apply(ReportAttempts(now_ms=5, worker_id="w1", started=[("quick", log.index)]))
    log.finish("w1", "quick", at_ms=5)
    assert worker.run_ms_avg == 0 and worker.queue_depth == 2 * QUEUE_PER_SLOT_MAX
    for i in range(40):
        tid = f"slow{i}"
        log.submit(tid, at_ms=1000 * i)
        token = log.sm.tasks[tid].fencing_token
        assert token is not None
        log.apply(ReportAttempts(now_ms=1000 * i, worker_id="w1", started=[(tid, token)]))
        log.finish("w1", tid, at_ms=1000 * i + 500)
    assert worker.run_ms_avg is not None and worker.run_ms_avg > 400
    assert worker.queue_depth == 0
