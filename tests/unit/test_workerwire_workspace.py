"""Git workspaces on the worker wire and in the session layer: the hello's capability, a
report's bases and outcome results checked at the boundary (bad ones refused before any
command), the held report keeping only held attempts' bases, the assign frame pinning a retry
to the recorded base, parents carrying their result, and the task and worker views."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentflow import wire
from agentflow.api.sessions import SessionHub, held_report
from agentflow.api.views import task_view, worker_view
from agentflow.state.commands import (
    AssignTasks,
    NewTask,
    RegisterWorker,
    ReportAttempts,
    SubmitTasks,
    SubmitWorkflow,
    TaskOutcome,
)
from agentflow.wire import FrameError
from agentflow.workerwire import MAX_REPORT_ITEMS, Hello, Report, decode_worker_frame
from tests.state.replica import StrictLog as Log

BASE = "a" * 40
COMMIT = "c" * 40
RESULT = {"base": BASE, "commit": COMMIT, "branch": "agentflow/t1", "pushed": True,
          "files": [["a.txt", 1, 0]], "files_total": 1, "insertions": 1}  # fmt: skip
WORKSPACE = {"repo": "https://example.com/r.git"}


def frame(kind: str, **fields: Any) -> bytes:
    return wire.pack({"t": kind, **fields})


def report(**fields: Any) -> Report:
    decoded = decode_worker_frame(frame("report", seq=1, **fields))
    assert isinstance(decoded, Report)
    return decoded


def outcome(**fields: Any) -> dict[str, Any]:
    return {"task_id": "t1", "token": 3, "status": "completed", **fields}


def test_hello_says_whether_the_worker_runs_workspaces() -> None:
    hello = decode_worker_frame(frame("hello", worker_id="w", slots=1))
    assert isinstance(hello, Hello) and hello.workspaces is False
    hello = decode_worker_frame(frame("hello", worker_id="w", slots=1, workspaces=True))
    assert isinstance(hello, Hello) and hello.workspaces is True
    with pytest.raises(FrameError, match="workspaces must be true or false"):
        decode_worker_frame(frame("hello", worker_id="w", slots=1, workspaces=1))


def test_a_report_carries_bases_checked() -> None:
    assert report().bases == ()
    sha256 = "0" * 64
    assert report(bases=[["t1", 3, BASE], ["t2", 4, sha256]]).bases == (
        ("t1", 3, BASE),
        ("t2", 4, sha256),
    )


@pytest.mark.parametrize(
    ("bases", "match"),
    [
        ([["t1", 3]], r"\[task_id, token, sha\]"),
        ([["t1", 3, BASE.upper()]], "40 or 64 lowercase hex"),
        ([["t1", 3, BASE[:39]]], "40 or 64 lowercase hex"),
        ([["t1", 3, 7]], "40 or 64 lowercase hex"),
        ([["t1", -1, BASE]], "token"),
        ([["", 3, BASE]], "task_id"),
        ("t1", "bases must be an array"),
        ([["t1", 1, BASE]] * (MAX_REPORT_ITEMS + 1), "more than"),
    ],
)
def test_bad_bases_are_refused(bases: object, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        report(bases=bases)


def test_an_outcome_carries_its_checked_result_in_canonical_form() -> None:
    (done,) = report(
        outcomes=[outcome(workspace={**RESULT, "conflicts": [], "deletions": 0})]
    ).outcomes
    assert done.workspace == RESULT  # empty fields left off, as to_wire writes them
    (plain,) = report(outcomes=[outcome()]).outcomes
    assert plain.workspace is None


@pytest.mark.parametrize(
    ("workspace", "match"),
    [
        ({"commit": COMMIT}, "needs a base"),
        ({"base": "HEAD"}, "lowercase hex"),
        ({**RESULT, "branch": "refs/heads/x"}, "branch"),
        ({**RESULT, "token": "secret"}, "unknown fields"),
        ({"base": BASE, "pushed": True}, "pushed needs a commit"),
        ({**RESULT, "files": [["../x", 1, 0]] * 1001}, "over 1000"),
        ("base", "workspace must be a map"),
    ],
)
def test_bad_workspace_results_are_refused(workspace: object, match: str) -> None:
    with pytest.raises(FrameError, match=match):
        report(outcomes=[outcome(workspace=workspace)])


def _worker(log: Log, worker_id: str = "w1") -> None:
    log(
        RegisterWorker(
            now_ms=0, worker_id=worker_id, group="default", slots=2, resources={}, labels={},
            hostname="h", workspaces=True,
        )
    )  # fmt: skip


def _running(log: Log, task_id: str = "t1", spec: dict[str, Any] | None = None) -> int:
    new = NewTask(
        id=task_id,
        title=task_id,
        description="",
        spec=spec or {"command": "x", "workspace": WORKSPACE},
        max_retries=1,
    )
    log(SubmitTasks(now_ms=1, tasks=[new]))
    log(AssignTasks(now_ms=2, assignments=[(task_id, "w1")]))
    token = log.sm.tasks[task_id].fencing_token
    assert token is not None
    return token


def test_held_report_keeps_the_bases_and_results_of_held_attempts_only() -> None:
    log = Log()
    _worker(log)
    token = _running(log)
    command = held_report(log.sm, "w1", report(bases=[["t1", token, BASE]]), 9)
    assert command is not None and command.bases == [("t1", token, BASE)]
    log(command)
    assert log.sm.tasks["t1"].workspace_base == BASE
    done = report(outcomes=[outcome(token=token, workspace=RESULT)])
    command = held_report(log.sm, "w1", done, 10)
    assert command is not None and command.outcomes[0].workspace == RESULT
    log(command)
    assert log.sm.tasks["t1"].workspace_result == RESULT
    # A former attempt's base is dropped quietly, as applying it would.
    assert held_report(log.sm, "w1", report(bases=[["t1", token, BASE]]), 11) is None


def test_the_assign_frame_pins_a_retry_to_the_recorded_base() -> None:
    log = Log()
    _worker(log)
    token = _running(log)
    hub = SessionHub(log.sm)
    first = hub.assign_frame(log.sm.tasks["t1"])
    assert first["spec"]["workspace"] == WORKSPACE and "workspace_base" not in first
    assert "merge" not in first["spec"]
    log(ReportAttempts(now_ms=3, worker_id="w1", bases=[("t1", token, BASE)]))
    failed = TaskOutcome(task_id="t1", fencing_token=token, status="failed", exit_code=1)
    log(ReportAttempts(now_ms=4, worker_id="w1", outcomes=[failed]))
    from agentflow.state.commands import ReleaseDueTasks

    log(ReleaseDueTasks(now_ms=10**12))
    log(AssignTasks(now_ms=10**12, assignments=[("t1", "w1")]))
    retry = hub.assign_frame(log.sm.tasks["t1"])
    assert retry["token"] != token and retry["workspace_base"] == BASE


def test_a_plain_assign_frame_is_unchanged() -> None:
    log = Log()
    _worker(log)
    _running(log, spec={"command": "x"})
    sent = SessionHub(log.sm).assign_frame(log.sm.tasks["t1"])
    assert sent["spec"] == {
        "command": "x", "args": None, "agent": None, "prompt": None, "function": None,
        "kwargs": None, "env": {}, "cwd": None, "pickled": None,
    }  # fmt: skip
    assert "workspace_base" not in sent


def test_parents_carry_their_workspace_result() -> None:
    log = Log()
    _worker(log)
    edit = {"command": "x", "workspace": WORKSPACE}
    merge = {"merge": ["p"], "workspace": WORKSPACE}
    tasks = [
        NewTask(id="p", title="p", description="", spec=edit, key="p"),
        NewTask(id="m", title="m", description="", spec=merge, key="m", dependencies=["p"]),
    ]
    log(
        SubmitWorkflow(
            now_ms=1, workflow_id="wf", name="wf", failure_policy="fail_fast", tasks=tasks
        )
    )
    log(AssignTasks(now_ms=2, assignments=[("p", "w1")]))
    token = log.sm.tasks["p"].fencing_token
    assert token is not None
    done = TaskOutcome(
        task_id="p",
        fencing_token=token,
        status="completed",
        workspace={**RESULT, "branch": "agentflow/p"},
    )
    log(ReportAttempts(now_ms=3, worker_id="w1", outcomes=[done]))
    log(AssignTasks(now_ms=4, assignments=[("m", "w1")]))
    sent = SessionHub(log.sm).assign_frame(log.sm.tasks["m"])
    assert sent["spec"]["merge"] == ["p"]
    assert sent["parents"][0]["workspace"]["branch"] == "agentflow/p"


def test_views_show_the_workspace_and_its_result() -> None:
    log = Log()
    _worker(log)
    token = _running(log)
    view = task_view(log.sm, log.sm.tasks["t1"], 5)
    assert view["workspace"] == WORKSPACE and view["merge"] is None
    assert view["workspace_result"] is None
    done = TaskOutcome(task_id="t1", fencing_token=token, status="completed", workspace=RESULT)
    log(ReportAttempts(now_ms=4, worker_id="w1", outcomes=[done]))
    view = task_view(log.sm, log.sm.tasks["t1"], 5)
    assert view["workspace_result"] == RESULT
    assert view["attempt_history"][0]["workspace"] == RESULT
    assert worker_view(log.sm.workers["w1"], 5, None)["workspaces"] is True


_leaves = (
    st.none() | st.booleans() | st.integers(-5, 2000) | st.text(max_size=8)
    | st.sampled_from([BASE, COMMIT, "agentflow/x", "a.txt"])
)  # fmt: skip
_values = st.recursive(
    _leaves, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4)
)
_keys = st.sampled_from([*RESULT, "files_total", "conflicts", "merged", "prepare_ms", "x"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=8))
def test_any_workspace_result_decodes_canonically_or_is_refused(workspace: dict[str, Any]) -> None:
    try:
        (done,) = report(outcomes=[outcome(workspace=workspace)]).outcomes
    except FrameError:
        return
    assert done.workspace is not None
    assert (
        report(outcomes=[outcome(workspace=done.workspace)]).outcomes[0].workspace == done.workspace
    )
