"""check_tasks: acknowledged tasks end by their rules, never vanish; one key makes one task."""

from __future__ import annotations

from agentflow.testing.chaos.checkers import check_tasks
from tests.chaos.check_builders import Hist


def good() -> Hist:
    h = Hist()
    h.task("t1", 0, rule="ok")
    h.task("t2", 10, rule="fail-once", attempts=2)
    h.task("t3", 20, rule="fail-always", status="failed", attempts=3)
    h.task("t4", 30, rule="slow", status="cancelled")
    h.op("cancel", 40, task_id="t4", type="info")
    h.op("submit", 50, type="info", key="k-t5", rule="ok")
    h.op(
        "workflow",
        60,
        key="w1",
        names=["a", "b"],
        rules={"a": "fail-always"},
        result={"workflow_id": "w1", "task_ids": {"a": "wa", "b": "wb"}},
    )
    h.final("wa", status="failed", attempt=9)
    h.final("wb", status="upstream_failed", attempt=0)
    h.op("submit", 70, key="k-t1", rule="ok", result={"task_id": "t1"})  # a retried submit
    h.op("submit", 80, key="k-p", rule="ok", group="parked", result={"task_id": "p1"})
    h.final("p1", status="queued", attempt=0)
    return h


def test_a_good_history_passes() -> None:
    result = check_tasks(good().ops)
    assert result.ok, result.anomalies
    assert result.verdict == "PASS"
    assert result.stats["acknowledged_tasks"] == 7
    assert result.stats["final_completed"] == 2


def test_a_vanished_task_is_named_with_its_reads() -> None:
    h = good()
    h.op("submit", 90, key="k-t9", rule="ok", result={"task_id": "t9"})
    h.op("final-task", 2_000_000, type="fail", process="final", task_id="t9", error="404")
    result = check_tasks(h.ops)
    assert not result.ok
    (line,) = result.anomalies
    assert "task t9" in line and "vanished" in line and "final-task by final" in line


def test_a_task_that_reads_unknown_once_vanished_even_if_another_read_found_it() -> None:
    h = good()
    h.op("final-task", 2_000_000, type="fail", process="final", task_id="t1", error="404")
    (line,) = check_tasks(h.ops).anomalies
    assert "task t1" in line and "vanished" in line and "another read found it" in line


def test_a_task_with_no_final_read_is_an_anomaly() -> None:
    h = good()
    h.op("submit", 95, key="k-t8", rule="ok", result={"task_id": "t8"})
    (line,) = check_tasks(h.ops).anomalies
    assert "task t8" in line and "no final-task read" in line


def test_a_status_its_rule_does_not_allow_is_an_anomaly() -> None:
    h = Hist()
    h.task("t1", 0, rule="ok", status="failed")
    h.task("t2", 0, rule="fail-always", status="completed")
    h.task("t3", 0, rule="ok", status="cancelled")  # no cancel was invoked
    h.task("t4", 0, rule="ok", status="running")
    lines = check_tasks(h.ops).anomalies
    assert len(lines) == 4, lines
    assert "task t1 (rule ok" in lines[0] and "ended failed" in lines[0]
    assert "task t3" in lines[2] and "ended cancelled" in lines[2]


def test_a_failed_cancel_does_not_excuse_a_cancelled_task() -> None:
    h = Hist()
    h.task("t1", 0, status="cancelled")
    h.op("cancel", 40, task_id="t1", type="fail", error="409 already completed")
    assert not check_tasks(h.ops).ok


def test_upstream_failed_needs_a_failed_sibling() -> None:
    h = Hist()
    h.op(
        "workflow",
        0,
        key="w1",
        names=["a", "b"],
        result={"workflow_id": "w1", "task_ids": {"a": "wa", "b": "wb"}},
    )
    h.final("wa", status="completed", attempt=1)
    h.final("wb", status="upstream_failed", attempt=0)
    (line,) = check_tasks(h.ops).anomalies
    assert "task wb" in line and "upstream_failed" in line


def test_one_idempotency_key_two_tasks_is_an_anomaly() -> None:
    h = good()
    h.task("t1-bis", 100, key="k-t1")
    (line,) = check_tasks(h.ops).anomalies
    assert "idempotency key 'k-t1' made 2 tasks" in line and "t1-bis" in line


def test_one_idempotency_key_two_workflows_is_an_anomaly() -> None:
    h = good()
    h.op(
        "workflow",
        200,
        key="w1",
        names=["a", "b"],
        rules={"a": "fail-always"},
        result={"workflow_id": "w1-bis", "task_ids": {"a": "wa", "b": "wb"}},
    )
    (line,) = check_tasks(h.ops).anomalies
    assert "idempotency key 'w1' made 2 workflows: w1 by workflow by c1" in line


def test_an_info_submit_found_later_obeys_its_rule() -> None:
    h = Hist()
    h.op("submit", 0, type="info", key="k-x", rule="ok")
    h.op(
        "final-task",
        900,
        process="final",
        key="k-x",
        result={"task_id": "x", "status": "failed", "attempt": 1},
    )
    (line,) = check_tasks(h.ops).anomalies
    assert "task x" in line and "ended failed" in line
    h.ops[-1] = h.ops[-1].__class__(
        **{**h.ops[-1].to_json(), "result": {"task_id": "x", "status": "completed", "attempt": 1}}
    )
    assert check_tasks(h.ops).ok
