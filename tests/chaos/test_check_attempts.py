"""check_attempts: a task's attempts never overlap unless fenced off, and a completion belongs
to the attempt that really finished (the storage host's records are the ground truth)."""

from __future__ import annotations

from agentflow.testing.chaos.checkers import check_attempts
from tests.chaos.check_builders import Hist


def good() -> Hist:
    h = Hist()
    h.task("t1", 0)
    h.task("t2", 0, rule="fail-once", attempts=3)
    # t3: attempt 1 stalls, attempt 2 (token 300) takes over; 1's end is fenced off.
    h.op("submit", 0, key="k3", rule="slow", result={"task_id": "t3"})
    h.attempt("t3", 1, token=200, at=200, end=False)
    h.attempt("t3", 2, token=300, at=300)
    h.write("task:t3", "t3/1", 200, "end", at=400, accepted=False)
    h.final("t3", status="completed", attempt=2)
    # t4: the body's retried write landed twice.
    h.op("submit", 0, key="k4", rule="ok", result={"task_id": "t4"})
    h.attempt("t4", 1, token=50, at=50)
    h.write("task:t4", "t4/1", 50, "end", at=70)
    h.final("t4", status="completed", attempt=1)
    return h


def test_a_good_history_passes() -> None:
    result = check_attempts(good().ops, good().storage)
    assert result.ok, result.anomalies
    assert result.stats["refused"] == 1
    assert result.stats["retried_duplicates"] == 1
    assert result.stats["completed_checked"] == 4


def test_a_lower_token_accepted_after_a_higher_one_is_an_overlap() -> None:
    h = good()
    h.write("task:t3", "t3/1", 200, "end", at=500)
    lines = check_attempts(h.ops, h.storage).anomalies
    assert any(
        "task:t3: token went back" in a and "t3/1 token 200" in a and "t3/2 token 300" in a
        for a in lines
    ), lines


def test_one_token_two_writers_is_an_anomaly() -> None:
    h = good()
    h.write("task:t1", "t1/7", 100, "start", at=115)
    lines = check_attempts(h.ops, h.storage).anomalies
    assert any("token 100 used by two writers" in a for a in lines), lines


def test_attempt_numbers_must_rise_with_tokens() -> None:
    h = Hist()
    h.attempt("t1", 2, token=10, at=0)
    h.attempt("t1", 1, token=20, at=50)
    lines = check_attempts(h.ops, h.storage).anomalies
    assert any("attempt numbers do not rise with tokens" in a for a in lines), lines


def test_an_attempt_that_starts_again_after_it_ended_is_an_anomaly() -> None:
    h = good()
    h.write("task:t1", "t1/1", 100, "start", at=150)
    lines = check_attempts(h.ops, h.storage).anomalies
    assert any("t1/1 started again after it ended" in a for a in lines), lines


def test_an_end_without_a_start_is_an_anomaly() -> None:
    h = Hist()
    h.write("task:t1", "t1/1", 100, "end", at=150)
    (line,) = check_attempts(h.ops, h.storage).anomalies
    assert "t1/1 ended unstarted" in line


def test_a_completion_without_an_accepted_end_from_its_attempt() -> None:
    h = good()
    h.final("t2", status="completed", attempt=2, at=2_000_000)  # storage: attempt 3 finished
    h.ops.remove(next(op for op in h.ops if op.f == "final-task" and op.args["task_id"] == "t2"))
    (line,) = check_attempts(h.ops, h.storage).anomalies
    assert "task t2 completed as attempt 2" in line and "later attempt wrote" in line


def test_a_completion_with_no_end_at_all() -> None:
    h = good()
    h.storage = [r for r in h.storage if not (r.stream == "task:t1" and r.event == "end")]
    (line,) = check_attempts(h.ops, h.storage).anomalies
    assert "task t1 completed as attempt 1" in line and "no accepted end from t1/1" in line
