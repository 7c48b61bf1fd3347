"""The run report (text and JSON), the summary table, and check_all over a large history:
every checker at once, linear or n log n, on the ~50,000 operations a long run records."""

from __future__ import annotations

import json

from agentflow.testing.chaos.checkers import CheckerResult, Convergence, check_all
from agentflow.testing.chaos.report import AppliedFault, RunReport, summary_table
from tests.chaos.check_builders import Hist


def report(seed: int, results: list[CheckerResult], h: Hist | None = None) -> RunReport:
    h = h or Hist()
    if not h.ops:
        h.task("t1", 0)
        h.op("submit", 10, type="info", key="k2", rule="ok")
        h.op("cancel", 20, type="fail", task_id="t1")
    return RunReport.build(
        seed=seed,
        schedule=["2.0s kill -9 m1", "5.0s partition m2 | m1 m3"],
        faults=[AppliedFault(2.01, "kill -9 m1"), (5.02, "partition m2 | m1 m3")],
        ops=h.ops,
        results=results,
        recovery_s=1.5,
        duration_s=30.0,
    )


PASS = CheckerResult.of("tasks", [], {"acknowledged_tasks": 1})
FAIL = CheckerResult.of("locks", ["lock chaos-lock-0: token went back"], {"ok_acquires": 2})
UNKNOWN = CheckerResult.of("reads", [], {"registers_unknown": 1}, ["1 parked task undecided"])


def test_the_text_report_shows_schedule_faults_counts_and_anomalies() -> None:
    text = report(7, [PASS, FAIL, UNKNOWN]).to_text()
    assert text.startswith("chaos run seed 7: FAIL\n")
    assert "  2.0s kill -9 m1" in text and "    5.02s  partition m2 | m1 m3" in text
    assert "  submit         1/1/0" in text and "  total          2/1/1" in text
    assert "    ! lock chaos-lock-0: token went back" in text
    assert "    ? 1 parked task undecided" in text
    assert "recovery after healing: 1.50s" in text


def test_the_verdict_is_the_worst_of_its_checkers() -> None:
    assert report(1, [PASS]).verdict == "PASS"
    assert report(1, [PASS, UNKNOWN]).verdict == "UNKNOWN"
    assert report(1, [UNKNOWN, FAIL]).verdict == "FAIL"


def test_the_json_report_round_trips() -> None:
    original = report(7, [PASS, FAIL, UNKNOWN])
    data = json.loads(json.dumps(original.to_json()))
    assert data["verdict"] == "FAIL"
    assert RunReport.from_json(data) == original


def test_the_summary_table_has_a_row_per_run_and_totals() -> None:
    table = summary_table([report(1, [PASS]), report(22, [FAIL]), report(3, [UNKNOWN])])
    lines = table.splitlines()
    assert lines[0].split() == [
        "seed",
        "faults",
        "ops",
        "ok",
        "info",
        "fail",
        "anomalies",
        "verdict",
    ]
    assert lines[2].split() == ["1", "2", "4", "2", "1", "1", "0", "PASS"]
    assert lines[3].split() == ["22", "2", "4", "2", "1", "1", "1", "FAIL"]
    assert lines[6].split() == ["3", "runs", "6", "12", "6", "3", "3", "1", "FAIL"]


def big_history(tasks: int) -> Hist:
    """A good history of ~13 ops per task: submits, reads, locks, messages, a parked task."""
    h = Hist()
    for i in range(tasks):
        t = i * 100  # every final read (at 1,000 s) comes after
        h.task(f"t{i}", t, process=f"c{i % 5}", attempts=1 + i % 2, rule="fail-once")
        h.op("task-read", t + 50, process="r", task_id=f"t{i}", result={"status": "queued"})
        h.op("lock-acquire", t, process="l", lock="L", holder=f"h{i}", result={"token": i + 1})
        h.op(
            "fenced-append",
            t + 10,
            process="l",
            lock="L",
            holder=f"h{i}",
            token=i + 1,
            data=f"d{i}",
            result={"accepted": True},
        )
        h.write("lock:L", f"h{i}", i + 1, f"d{i}", at=t + 12)
        h.op("send", t, process="s", sender="A", receiver="B", seq=i + 1, result={})
        h.op(
            "receive",
            t + 20,
            process="b",
            agent="B",
            result={"messages": [{"sender": "A", "seq": i + 1, "message_id": "m", "cursor": i}]},
        )
        h.op("ack", t + 30, process="b", agent="B", upto=i)
        if i % 100 == 0:
            h.op(
                "submit",
                t,
                process="p",
                group="parked",
                priority="low",
                key=f"p{i}",
                result={"task_id": f"p{i}"},
            )
            h.op("set-priority", t + 10, process="p", task_id=f"p{i}", priority="high", result={})
            h.op("task-read", t + 20, process="p", task_id=f"p{i}", result={"priority": "high"})
            h.final(f"p{i}", status="queued", attempt=0)
    return h


def test_check_all_passes_a_large_good_history_and_flags_a_break_in_it() -> None:
    h = big_history(6_250)
    assert len(h.ops) > 50_000
    views = {"m1": {"state_applied_index": 9, "state_digest": "x"}}
    results = check_all(
        h.ops, h.storage, convergence=Convergence(views=views, recovery_s=1.0, bound_s=10.0)
    )
    assert [r.name for r in results] == [
        "tasks",
        "attempts",
        "locks",
        "messages",
        "reads",
        "convergence",
    ]
    assert all(r.ok and r.verdict == "PASS" for r in results), [r.anomalies[:3] for r in results]
    h.write("lock:L", "h5", 6, "late", at=3_999_999)
    broken = {r.name: r for r in check_all(h.ops, h.storage)}
    assert not broken["locks"].ok and broken["tasks"].ok
