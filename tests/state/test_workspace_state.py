"""Git workspaces in the replicated state: the recorded base of an attempt (the first wins, a
stale attempt's is ignored), the result kept per attempt, placement on capable workers only, and
rows and entries without a workspace byte-identical to those from before it (log format 3).
Commands go through their wire encoding, as they do through the log."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from agentflow.state import TaskStatus
from agentflow.state.commands import (
    AssignTasks,
    MarkWorkersLost,
    NewTask,
    RegisterWorker,
    ReportAttempts,
    SubmitTasks,
    TaskOutcome,
    decode_command,
    encode_command,
)
from agentflow.state.placement import NEEDS_GIT_REASON, plan_pass
from agentflow.state.records import Attempt, TaskRecord, WorkerRecord
from agentflow.state.taskrows import pack_task, unpack_task
from agentflow.state.tasks import new_record
from tests.state.replica import StrictLog as Log

BASE = "a" * 40
OTHER = "b" * 40
WORKSPACE = {"repo": "https://example.com/r.git", "ref": "main"}
RESULT = {"base": BASE, "commit": "c" * 40, "branch": "agentflow/t1", "pushed": True}


def register(log: Log, worker_id: str = "w1", *, workspaces: bool = True) -> None:
    log(
        RegisterWorker(
            now_ms=log.index,
            worker_id=worker_id,
            group="default",
            slots=2,
            resources={},
            labels={},
            hostname="h",
            workspaces=workspaces,
        )
    )


def submit(log: Log, spec: dict[str, Any], task_id: str = "t1", retries: int = 0) -> None:
    task = NewTask(id=task_id, title=task_id, description="", spec=spec, max_retries=retries)
    log(SubmitTasks(now_ms=log.index, tasks=[task]))


def assign(log: Log, task_id: str = "t1", worker_id: str = "w1") -> int:
    log(AssignTasks(now_ms=log.index, assignments=[(task_id, worker_id)]))
    token = log.sm.tasks[task_id].fencing_token
    assert token is not None
    return token


def report(log: Log, **kwargs: Any) -> object:
    return log(ReportAttempts(now_ms=log.index, worker_id=kwargs.pop("worker", "w1"), **kwargs))


def outcome(token: int, status: str = "completed", **kwargs: Any) -> TaskOutcome:
    return TaskOutcome(task_id="t1", fencing_token=token, status=status, **kwargs)


def test_the_first_base_wins_and_a_stale_tokens_base_is_ignored() -> None:
    log = Log()
    register(log)
    submit(log, {"command": "true", "workspace": WORKSPACE}, retries=1)
    token = assign(log)
    report(log, started=[("t1", token)], bases=[("t1", token - 1, OTHER)])
    assert log.sm.tasks["t1"].workspace_base is None  # another attempt's token
    report(log, bases=[("t1", token, BASE)])
    report(log, bases=[("t1", token, OTHER)])  # a second base of the same attempt: ignored
    task = log.sm.tasks["t1"]
    assert task.attempts[-1].workspace == {"base": BASE}
    assert task.workspace_base == BASE
    assert task.workspace_result is None  # running: nothing but its base yet


def test_results_are_kept_per_attempt_and_a_superseded_one_is_refused() -> None:
    log = Log()
    register(log)
    submit(log, {"command": "true", "workspace": WORKSPACE}, retries=1)
    first = assign(log)
    report(log, started=[("t1", first)], bases=[("t1", first, BASE)])
    failed = {"base": BASE}
    assert report(log, outcomes=[outcome(first, "failed", exit_code=1)]) == [True]
    task = log.sm.tasks["t1"]
    assert task.attempts[0].workspace == failed  # no result sent: the base stays
    assert task.workspace_result == failed  # a finished attempt with no commit
    log.sm.tasks["t1"].not_before = 0
    from agentflow.state.commands import ReleaseDueTasks

    log(ReleaseDueTasks(now_ms=10**12))
    second = assign(log)
    assert second != first
    # The first attempt's late result carries a superseded token: refused, nothing stored.
    late = {**RESULT, "commit": "d" * 40}
    assert report(log, outcomes=[outcome(first, workspace=late)]) == [False]
    assert report(log, outcomes=[outcome(second, workspace=RESULT)]) == [True]
    task = log.sm.tasks["t1"]
    assert [a.workspace for a in task.attempts] == [failed, RESULT]
    assert task.workspace_result == RESULT
    assert task.workspace_base == BASE
    assert task.status is TaskStatus.COMPLETED


@pytest.mark.parametrize("spec", [{"command": "true", "workspace": WORKSPACE}, {"merge": ["a"]}])
def test_workspace_tasks_go_only_to_capable_workers(spec: dict[str, Any]) -> None:
    log = Log()
    register(log, "plain", workspaces=False)
    submit(log, {**spec, "workspace": WORKSPACE})
    plan = plan_pass(log.sm)
    assert plan.assignments == []
    reason = plan.unschedulable["t1"]
    assert reason is not None and reason.startswith(NEEDS_GIT_REASON)
    register(log, "git", workspaces=True)
    assert log.sm.workers["git"].workspaces is True
    assert plan_pass(log.sm).assignments == [("t1", "git")]


def test_a_plain_task_still_goes_to_any_worker() -> None:
    log = Log()
    register(log, "plain", workspaces=False)
    submit(log, {"command": "true"})
    assert plan_pass(log.sm).assignments == [("t1", "plain")]


def _record(spec: dict[str, Any]) -> TaskRecord:
    task = new_record(NewTask(id="t1", title="t", description="", spec=spec), 5)
    task.attempts.append(Attempt(number=1, fencing_token=3, worker_id="w1", assigned_at=6))
    return task


def test_rows_without_a_workspace_keep_their_old_shape() -> None:
    row = msgpack.unpackb(pack_task(_record({"command": "true"})), raw=False)
    spec, attempts = row[4], row[row_index("attempts")]
    assert len(spec) == 9  # command .. pickled: no workspace, no merge
    assert len(attempts[0]) == 9  # number .. reason: no workspace
    assert "workspace" not in _record({"command": "true"}).spec.to_wire()
    assert "workspace" not in _record({"command": "true"}).attempts[0].to_wire()


def row_index(name: str) -> int:
    from agentflow.state.taskrows import _TASK_FIELDS

    return _TASK_FIELDS.index(name) + 1


@pytest.mark.parametrize(
    "spec",
    [{"command": "x", "workspace": WORKSPACE}, {"merge": ["a", "b"], "workspace": WORKSPACE}],
)
def test_rows_with_a_workspace_round_trip(spec: dict[str, Any]) -> None:
    task = _record(spec)
    task.attempts[0].workspace = RESULT
    row = pack_task(task)
    back = unpack_task(row)
    assert back.to_wire() == task.to_wire()
    assert back.spec.workspace == WORKSPACE and back.workspace_result == RESULT
    assert pack_task(back) == row


def test_a_short_row_is_refused() -> None:
    row = msgpack.unpackb(pack_task(_record({"command": "true"})), raw=False)
    row[4] = row[4][:8]
    with pytest.raises(ValueError, match="TaskSpec row has 8 fields"):
        unpack_task(msgpack.packb(row, use_bin_type=True))


def test_entries_leave_new_fields_off_at_their_defaults() -> None:
    plain = ReportAttempts(now_ms=1, worker_id="w", outcomes=[outcome(1)])
    assert "bases" not in plain.to_wire()
    assert "workspace" not in plain.to_wire()["outcomes"][0]
    reg = RegisterWorker(
        now_ms=1, worker_id="w", group="g", slots=1, resources={}, labels={}, hostname="h"
    )
    assert "workspaces" not in reg.to_wire()
    full = ReportAttempts(
        now_ms=1,
        worker_id="w",
        bases=[("t1", 1, BASE)],
        outcomes=[outcome(1, workspace=RESULT)],
    )
    assert decode_command(encode_command(full)) == full
    worker = WorkerRecord(
        id="w", group="g", slots=1, resources={}, labels={}, hostname="h", registered_at=0
    )
    assert "workspaces" not in worker.to_wire()
    worker.workspaces = True
    assert WorkerRecord.from_wire(worker.to_wire()) == worker


def test_a_badly_typed_base_is_refused_when_decoded() -> None:
    bad = ReportAttempts(now_ms=1, worker_id="w", bases=[("t1", "one", BASE)])  # type: ignore[list-item]
    from agentflow.state.commands import CommandDecodeError

    with pytest.raises(CommandDecodeError):
        decode_command(encode_command(bad))


def test_lost_worker_keeps_the_base_for_the_retry() -> None:
    log = Log()
    register(log)
    submit(log, {"command": "true", "workspace": WORKSPACE}, retries=1)
    token = assign(log)
    report(log, started=[("t1", token)], bases=[("t1", token, BASE)])
    log(MarkWorkersLost(now_ms=log.index, worker_ids=["w1"]))
    task = log.sm.tasks["t1"]
    assert task.workspace_base == BASE


def test_format_3_without_workspaces_is_format_2s_body_and_memorylog_writes_its_format() -> None:
    from agentflow.cluster.memlog import MemoryLog
    from agentflow.state import StateMachine
    from agentflow.state.envelope import LOG_FORMAT, WORKSPACE_FORMAT

    assert LOG_FORMAT >= WORKSPACE_FORMAT == 3
    plain = ReportAttempts(now_ms=1, worker_id="w", started=[("t1", 1)], outcomes=[outcome(1)])
    two, three = (msgpack.unpackb(encode_command(plain, fmt)) for fmt in (2, 3))
    assert (two[0], three[0]) == (2, 3) and two[1:] == three[1:]
    log = MemoryLog(StateMachine(), log_format=2)
    assert log.log_format() == 2
    log.apply(plain)
    assert msgpack.unpackb(log.entries[-1])[0] == 2
    assert MemoryLog(StateMachine()).log_format() == LOG_FORMAT
