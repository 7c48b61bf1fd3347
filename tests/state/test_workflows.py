"""Workflows in the state machine: dependencies, triggers, failure policies, cancel, retry."""

from __future__ import annotations

from typing import Any

from agentflow.state import StateMachine, TaskStatus
from agentflow.state.commands import (
    AssignTasks,
    CancelWorkflow,
    Command,
    NewTask,
    RegisterWorker,
    ReportAttempts,
    RetryWorkflow,
    SubmitWorkflow,
    TaskOutcome,
    decode_command,
    encode_command,
)
from agentflow.state.records import WorkflowStatus


class Flow:
    def __init__(self, edges: dict[str, list[str]], policy: str = "continue", **extra: Any):
        self.sm = StateMachine()
        self.index = 0
        self.do(
            RegisterWorker(
                now_ms=0,
                worker_id="w",
                group="default",
                slots=100,
                resources={},
                labels={},
                hostname="h",
            )
        )
        tasks = [
            NewTask(
                id=f"t-{k}",
                title=k,
                description="",
                spec={} if k in extra.get("noop", ()) else {"command": "true"},
                key=k,
                dependencies=[f"t-{d}" for d in deps],
                trigger=extra.get("triggers", {}).get(k, "all_success"),
                allow_failure=k in extra.get("allowed", ()),
                noop=k in extra.get("noop", ()),
            )
            for k, deps in edges.items()
        ]
        self.do(
            SubmitWorkflow(
                now_ms=1, workflow_id="wf", name="test", failure_policy=policy, tasks=tasks
            )
        )

    def do(self, command: Command) -> Any:
        self.index += 1
        return self.sm.apply(self.index, decode_command(encode_command(command)))

    def status(self, key: str) -> str:
        return self.sm.tasks[f"t-{key}"].status.value

    def states(self) -> dict[str, str]:
        return {t.key or t.id: t.status.value for t in self.sm.tasks.values()}

    def run(self, key: str, outcome: str = "completed") -> None:
        tid = f"t-{key}"
        assert self.do(AssignTasks(now_ms=2, assignments=[(tid, "w")])) == [tid]
        token = self.sm.tasks[tid].fencing_token or 0
        code = 0 if outcome == "completed" else 1
        self.do(
            ReportAttempts(
                now_ms=3,
                worker_id="w",
                outcomes=[
                    TaskOutcome(task_id=tid, fencing_token=token, status=outcome, exit_code=code)
                ],
            )
        )

    @property
    def workflow(self) -> str:
        return self.sm.workflows["wf"].status.value


DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_diamond_runs_in_dependency_order() -> None:
    f = Flow(DIAMOND)
    assert f.states() == {"a": "queued", "b": "pending", "c": "pending", "d": "pending"}
    f.run("a")
    assert f.status("b") == f.status("c") == "queued" and f.status("d") == "pending"
    f.run("b")
    assert f.status("d") == "pending"
    f.run("c")
    assert f.status("d") == "queued"
    f.run("d")
    assert f.workflow == "completed"


def test_continue_policy_skips_dependents_and_lets_other_branches_finish() -> None:
    f = Flow({"a": [], "b": ["a"], "c": [], "d": ["c"]})
    f.run("a", "failed")
    assert f.status("b") == "upstream_failed"
    assert f.sm.tasks["t-b"].reason == "upstream a failed"
    assert f.workflow == "running"
    f.run("c")
    f.run("d")
    assert f.workflow == "failed"


def test_fail_fast_cancels_everything_not_finished() -> None:
    f = Flow({"a": [], "b": [], "c": ["b"]}, policy="fail_fast")
    f.do(AssignTasks(now_ms=2, assignments=[("t-b", "w")]))
    f.run("a", "failed")
    assert f.states() == {"a": "failed", "b": "cancelled", "c": "cancelled"}
    assert f.sm.tasks["t-b"].cancel_requested  # running: its worker is told to kill it
    assert f.workflow == "failed"


def test_trigger_rules() -> None:
    f = Flow(
        {"a": [], "b": [], "done": ["a", "b"], "one": ["a", "b"], "all": ["a", "b"]},
        triggers={"done": "all_done", "one": "one_success"},
    )
    f.run("a", "failed")
    assert f.status("all") == "upstream_failed"
    assert f.status("one") == "pending" and f.status("done") == "pending"
    f.run("b")
    assert f.status("one") == "queued" and f.status("done") == "queued"


def test_one_success_with_no_success_is_upstream_failed() -> None:
    f = Flow({"a": [], "b": [], "one": ["a", "b"]}, triggers={"one": "one_success"})
    f.run("a", "failed")
    f.run("b", "timed_out")
    assert f.status("one") == "upstream_failed"


def test_allow_failure_does_not_block_or_fail_the_workflow() -> None:
    f = Flow({"a": [], "b": ["a"]}, policy="fail_fast", allowed={"a"})
    f.run("a", "failed")
    assert f.status("b") == "queued"
    f.run("b")
    assert f.workflow == "completed"


def test_noop_tasks_complete_as_soon_as_they_may_start() -> None:
    f = Flow({"start": [], "work": ["start"], "end": ["work"]}, noop={"start", "end"})
    assert f.states() == {"start": "completed", "work": "queued", "end": "pending"}
    f.run("work")
    assert f.status("end") == "completed" and f.workflow == "completed"


def test_cancel_then_retry_keeps_what_succeeded() -> None:
    f = Flow(DIAMOND)
    f.run("a")
    f.run("b")
    assert f.do(CancelWorkflow(now_ms=5, workflow_id="wf")) == "wf"
    assert f.workflow == "cancelled"
    assert f.states() == {"a": "completed", "b": "completed", "c": "cancelled", "d": "cancelled"}
    assert f.do(RetryWorkflow(now_ms=6, workflow_id="wf")) == 2
    assert f.states() == {"a": "completed", "b": "completed", "c": "queued", "d": "pending"}
    assert f.workflow == "running" and f.sm.workflows["wf"].runs == 2
    f.run("c")
    f.run("d")
    assert f.workflow == "completed"


def test_retry_reruns_failed_and_downstream_only() -> None:
    f = Flow({"a": [], "b": ["a"], "c": [], "d": ["b", "c"]})
    f.run("a")
    f.run("b", "failed")
    f.run("c")
    assert f.states()["d"] == "upstream_failed" and f.workflow == "failed"
    assert f.do(RetryWorkflow(now_ms=9, workflow_id="wf")) == 2
    assert f.states() == {"a": "completed", "b": "queued", "c": "completed", "d": "pending"}
    attempts = f.sm.tasks["t-b"].attempts
    assert len(attempts) == 1 and attempts[0].status == "failed"  # history kept


def test_snapshot_restore_keeps_workflow_progress() -> None:
    f = Flow(DIAMOND)
    f.run("a")
    copy = StateMachine()
    copy.restore(f.sm.snapshot())
    assert copy.digest() == f.sm.digest()
    assert copy.workflows.open == {"wf": 3}
    assert sorted(copy.workflows.dependents["t-a"]) == ["t-b", "t-c"]
    assert copy.workflows["wf"].status is WorkflowStatus.RUNNING
    assert copy.tasks["t-d"].status is TaskStatus.PENDING
