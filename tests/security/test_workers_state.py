"""Finding 7 in the replicated state and the session layer, without processes: a worker id is
taken only by the instance holding its secret (or once it holds nothing), a report is applied
only for the reporting worker's own attempt with a valid status, and the session layer sorts a
report's attempts into held, formerly held (dropped) and never held (refused)."""

from __future__ import annotations

import pytest

from agentflow.api.sessions import admit, held_report, secret_hash
from agentflow.errors import ConflictError
from agentflow.state import TaskStatus, WorkerState
from agentflow.state.commands import (
    AssignTasks,
    MarkWorkersLost,
    NewTask,
    RegisterWorker,
    ReportAttempts,
    SubmitTasks,
    TaskOutcome,
    WorkerDisconnected,
)
from agentflow.workerwire import Outcome, Report
from tests.state.replica import StrictLog as Log


def register(
    log: Log, wid: str, digest: str, running: list[tuple[str, int]] | None = None
) -> object:
    return log(
        RegisterWorker(
            now_ms=0,
            worker_id=wid,
            group="default",
            slots=2,
            resources={},
            labels={},
            hostname="h",
            running=running or [],
            secret_hash=digest,
        )
    )


def running_task(log: Log, wid: str, tid: str = "t1") -> int:
    new = NewTask(id=tid, title=tid, description="", spec={"command": "true"})
    log(SubmitTasks(now_ms=1, tasks=[new]))
    assert log(AssignTasks(now_ms=2, assignments=[(tid, wid)])) == [tid]
    token = log.sm.tasks[tid].fencing_token
    assert token is not None
    return token


def outcome(tid: str, token: int, status: str = "completed", wid: str = "w1") -> ReportAttempts:
    done = TaskOutcome(task_id=tid, fencing_token=token, status=status, exit_code=0)
    return ReportAttempts(now_ms=5, worker_id=wid, outcomes=[done])


def test_only_the_secret_holder_takes_a_worker_id_that_holds_attempts() -> None:
    log = Log()
    register(log, "w1", "hash-a")
    token = running_task(log, "w1")
    before = log.sm.workers["w1"].to_wire()
    with pytest.raises(ConflictError):
        register(log, "w1", "hash-b")
    assert log.sm.workers["w1"].to_wire() == before  # nothing changed
    log(WorkerDisconnected(now_ms=3, worker_id="w1"))
    with pytest.raises(ConflictError):  # offline, still holding its attempt
        register(log, "w1", "hash-b")
    register(log, "w1", "hash-a", running=[("t1", token)])  # the instance itself resumes
    assert log.sm.workers["w1"].running == {"t1": token}
    log(MarkWorkersLost(now_ms=4, worker_ids=["w1"]))
    register(log, "w1", "hash-b")  # lost: its attempts were requeued, the id is free
    assert log.sm.workers["w1"].secret_hash == "hash-b"
    assert log.sm.workers["w1"].state is WorkerState.ACTIVE


def test_an_offline_worker_holding_nothing_and_an_old_record_may_be_taken() -> None:
    log = Log()
    register(log, "w1", "hash-a")
    log(WorkerDisconnected(now_ms=3, worker_id="w1"))
    register(log, "w1", "hash-b")
    register(log, "w0", "")  # a record from before session secrets
    register(log, "w0", "hash-c")
    assert log.sm.workers["w0"].secret_hash == "hash-c"


def test_a_bogus_status_or_another_workers_report_changes_nothing() -> None:
    log = Log()
    register(log, "w1", "a")
    register(log, "w2", "b")
    token = running_task(log, "w1")
    before = (log.sm.tasks["t1"].to_wire(), log.sm.workers["w1"].to_wire())
    assert log(outcome("t1", token, status="bogus")) == [False]
    assert log(outcome("t1", token, wid="w2")) == [False]
    log(ReportAttempts(now_ms=5, worker_id="w2", output=[("t1", token, "stdout", b"forged")]))
    assert (log.sm.tasks["t1"].to_wire(), log.sm.workers["w1"].to_wire()) == before
    assert "t1" not in log.sm.outputs
    assert log(outcome("t1", token)) == [True]
    assert log.sm.tasks["t1"].status is TaskStatus.COMPLETED


def test_admission_resumes_with_the_secret_and_refuses_without() -> None:
    log = Log()
    first = admit(log.sm, "w1", None)
    register(log, "w1", first.secret_hash)
    running_task(log, "w1")
    assert admit(log.sm, "w1", first.secret) == first
    with pytest.raises(ConflictError, match="held by another live instance"):
        admit(log.sm, "w1", None)
    with pytest.raises(ConflictError):
        admit(log.sm, "w1", "guess")
    assert secret_hash(first.secret) == log.sm.workers["w1"].secret_hash != first.secret


def _report(*pairs: tuple[str, int]) -> Report:
    outcomes = tuple(
        Outcome(task_id=t, token=k, status="completed", exit_code=0, reason=None, result=None)
        for t, k in pairs
    )
    return Report(seq=1, started=(), output=(), outcomes=outcomes)


def test_a_report_keeps_held_attempts_drops_former_ones_and_refuses_others() -> None:
    log = Log()
    register(log, "w1", "a")
    register(log, "w2", "b")
    old = running_task(log, "w1", "t1")
    log(MarkWorkersLost(now_ms=3, worker_ids=["w1"]))
    register(log, "w1", "a")
    assert log(AssignTasks(now_ms=4, assignments=[("t1", "w2")])) == ["t1"]
    new = log.sm.tasks["t1"].fencing_token
    assert new is not None and new != old
    mine = running_task(log, "w1", "t2")
    command = held_report(log.sm, "w1", _report(("t2", mine), ("t1", old), ("gone", 7)), 9)
    assert command is not None
    assert [o.task_id for o in command.outcomes] == ["t2"]  # t1's old attempt, gone: dropped
    assert held_report(log.sm, "w1", _report(("t1", old)), 9) is None  # nothing to commit
    with pytest.raises(ConflictError, match="not held"):
        held_report(log.sm, "w1", _report(("t2", mine), ("t1", new)), 9)  # w2's attempt
    with pytest.raises(ConflictError, match="not held"):
        held_report(log.sm, "w1", _report(("t2", mine + 1)), 9)  # a token t2 never had
