"""check_reads: parked tasks' priorities are linearizable registers (the project's checker,
times ranked so that no order is lost), and a task's state never goes back between reads."""

from __future__ import annotations

from agentflow.testing.chaos.checkers import check_reads
from agentflow.testing.chaos.checkers.reads import register_operations
from agentflow.testing.chaos.history import Op
from agentflow.testing.linearizability import OpKind
from tests.chaos.check_builders import Hist


def parked(h: Hist, task_id: str, at: int, priority: str = "low") -> None:
    h.op(
        "submit",
        at,
        key=f"k-{task_id}",
        rule="ok",
        group="parked",
        priority=priority,
        result={"task_id": task_id},
    )


def good() -> Hist:
    h = Hist()
    parked(h, "p1", 0)
    h.op(
        "task-read", 10, process="c2", task_id="p1", result={"priority": "low", "status": "queued"}
    )
    h.op("set-priority", 20, 40, task_id="p1", priority="high", result={})
    # Concurrent with the write: either value.
    h.op("task-read", 25, process="c2", task_id="p1", result={"priority": "low"})
    h.op("task-read", 30, process="c3", task_id="p1", result={"priority": "high"})
    h.op("task-read", 50, process="c2", task_id="p1", result={"priority": "high"})
    # An info write may land any time after it was invoked, or never.
    h.op("set-priority", 60, 70, type="info", task_id="p1", priority="urgent")
    h.op("task-read", 80, process="c2", task_id="p1", result={"priority": "high"})
    h.op("task-read", 90, process="c3", task_id="p1", result={"priority": "urgent"})
    # A task that runs: queued, a failed attempt sends it back to queued, then it completes.
    h.op("task-read", 0, process="c4", task_id="t1", result={"status": "queued", "attempt": 0})
    h.op("task-read", 10, process="c4", task_id="t1", result={"status": "running", "attempt": 1})
    h.op("task-read", 20, process="c4", task_id="t1", result={"status": "queued", "attempt": 1})
    h.op(
        "task-read", 30, 60, process="c5", task_id="t1", result={"status": "running", "attempt": 2}
    )
    h.op("task-read", 40, process="c4", task_id="t1", result={"status": "assigned", "attempt": 2})
    h.op("task-read", 70, process="c4", task_id="t1", result={"status": "completed", "attempt": 2})
    h.final("t1", status="completed", attempt=2)
    return h


def test_a_good_history_passes() -> None:
    result = check_reads(good().ops)
    assert result.ok, result.anomalies
    assert result.verdict == "PASS"
    assert result.stats == {
        "registers": 1,
        "register_ops": 9,
        "registers_unknown": 0,
        "state_reads": 7,
    }


def test_a_stale_read_of_a_register_is_not_linearizable() -> None:
    h = good()
    h.op("task-read", 100, process="c2", task_id="p1", result={"priority": "low"})
    (line,) = check_reads(h.ops).anomalies
    assert line.startswith("parked task p1: priority reads not linearizable")
    assert "get(p1) = 'low'" in line


def test_a_parked_task_read_as_unknown_is_not_linearizable() -> None:
    h = good()
    h.op("task-read", 100, type="fail", process="c2", task_id="p1", error="404 no task p1")
    (line,) = check_reads(h.ops).anomalies
    assert "get(p1) = None" in line


def test_a_replayed_submit_writes_nothing() -> None:
    """A submit retried with its key after a set-priority answers the same task and does not
    set the priority back: modelled as a second write, the read after it would fail."""
    h = good()
    parked(h, "p1", 200)
    h.op("task-read", 300, process="c2", task_id="p1", result={"priority": "urgent"})
    assert check_reads(h.ops).ok, check_reads(h.ops).anomalies


def test_times_closer_than_a_millisecond_keep_their_order() -> None:
    """A write that returned 0.3 ms before a read began must be seen by it: flooring to
    milliseconds would make the two concurrent and pass this history."""
    base = 5_000_000_000
    ops = [
        Op(
            process="c1",
            f="submit",
            invoke_ns=base,
            complete_ns=base + 100,
            type="ok",
            args={"group": "parked", "priority": "low"},
            result={"task_id": "p"},
        ),
        Op(
            process="c1",
            f="set-priority",
            invoke_ns=base + 200,
            complete_ns=base + 1_000_200,
            type="ok",
            args={"task_id": "p", "priority": "high"},
        ),
        Op(
            process="c2",
            f="task-read",
            invoke_ns=base + 1_000_500,
            complete_ns=base + 1_000_900,
            type="ok",
            args={"task_id": "p"},
            result={"priority": "low"},
        ),
    ]
    (history,) = register_operations(ops).values()
    assert [o.kind for o in history] == [OpKind.PUT, OpKind.PUT, OpKind.GET]
    assert history[1].return_ms is not None and history[1].return_ms < history[2].invoke_ms
    assert not check_reads(ops).ok


def test_an_exhausted_search_is_unknown_not_a_pass() -> None:
    h = Hist()
    parked(h, "p", 0)
    for i in range(12):  # many concurrent writes and reads: a wide search
        h.op("set-priority", 10, 500, process=f"w{i}", task_id="p", priority=f"v{i}", result={})
        h.op("task-read", 10, 500, process=f"r{i}", task_id="p", result={"priority": f"v{11 - i}"})
    result = check_reads(h.ops, max_states=50)
    assert result.ok and result.verdict == "UNKNOWN"
    assert result.stats["registers_unknown"] == 1
    assert "undecided within 50 states" in result.inconclusive[0]


def test_a_task_whose_state_goes_back_is_an_anomaly() -> None:
    h = good()
    h.op("task-read", 100, process="c6", task_id="t1", result={"status": "running", "attempt": 1})
    lines = check_reads(h.ops).anomalies
    assert len(lines) == 1, lines
    assert "task t1 read (1, 'running')" in lines[0] and "(2, 'completed') (terminal)" in lines[0]
    h = good()
    h.op("task-read", 50, process="c6", task_id="t1", result={"status": "queued", "attempt": 1})
    (line,) = check_reads(h.ops).anomalies
    assert "task t1 went back: read (1, 'queued')" in line and "after (2, 'assigned')" in line


def test_a_terminal_status_never_changes() -> None:
    h = good()
    h.op("task-read", 100, process="c6", task_id="t1", result={"status": "failed", "attempt": 2})
    (line,) = check_reads(h.ops).anomalies
    assert "read (2, 'failed')" in line and "after it read (2, 'completed') (terminal)" in line
