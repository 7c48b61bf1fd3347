"""Queue wait and run time, from the times stamped in the log, observed by the leader only."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentflow.api.task_metrics import MAX_TASK_SERIES, TaskTimings, task_kind
from agentflow.histograms import OVERFLOW_LABEL
from agentflow.state.events import Event, TaskChanged
from agentflow.state.records import Attempt, Priority, TaskRecord, TaskSpec


def _task(task_id: str, spec: TaskSpec, group: str = "default") -> TaskRecord:
    return TaskRecord(
        id=task_id,
        title="",
        description="",
        spec=spec,
        priority=Priority.MEDIUM,
        group=group,
        timeout_s=None,
        max_retries=0,
        retry_backoff_s=1.0,
        resources={},
        labels={},
        idempotency_key=None,
        created_at=0,
        enqueued_at=1_000,
        attempts=[
            Attempt(
                number=1,
                fencing_token=5,
                worker_id="w1",
                assigned_at=1_100,
                started_at=1_250,
                finished_at=3_250,
            )
        ],
    )


@dataclass
class _Tasks:
    rows: dict[str, TaskRecord] = field(default_factory=dict)

    def peek(self, task_id: str) -> TaskRecord | None:
        return self.rows.get(task_id)


@dataclass
class _Machine:
    tasks: _Tasks = field(default_factory=_Tasks)


def _ran(task_id: str) -> list[Event]:
    return [
        TaskChanged(index=1, task_id=task_id, status="running"),
        TaskChanged(index=2, task_id=task_id, status="completed"),
    ]


def test_the_leader_observes_wait_and_run_from_the_stamped_times():
    machine = _Machine()
    machine.tasks.rows["t1"] = _task("t1", TaskSpec(function="m:f"))
    timings = TaskTimings(machine, lambda: True)
    timings.on_events(_ran("t1"))
    wait = dict(timings.queue_wait.items())[("default", "function")]
    run = dict(timings.run.items())[("default", "function", "completed")]
    assert wait.cumulative()[1:] == (1, 0.25)
    assert run.cumulative()[1:] == (1, 2.0)


def test_a_follower_observes_nothing():
    machine = _Machine()
    machine.tasks.rows["t1"] = _task("t1", TaskSpec(command="true"))
    timings = TaskTimings(machine, lambda: False)
    timings.on_events(_ran("t1"))
    assert not list(timings.queue_wait.items()) and not list(timings.run.items())


def test_groups_beyond_the_bound_count_as_other():
    machine = _Machine()
    timings = TaskTimings(machine, lambda: True)
    for i in range(MAX_TASK_SERIES + 10):
        machine.tasks.rows[f"t{i}"] = _task(f"t{i}", TaskSpec(command="true"), group=f"g{i}")
        timings.on_events(_ran(f"t{i}"))
    series = dict(timings.queue_wait.items())
    assert len(series) == MAX_TASK_SERIES + 1
    assert series[(OVERFLOW_LABEL, OVERFLOW_LABEL)].cumulative()[1] == 10


def test_kinds():
    assert task_kind(_task("a", TaskSpec(command="true"))) == "command"
    assert task_kind(_task("b", TaskSpec(args=["true"]))) == "args"
    assert task_kind(_task("c", TaskSpec(agent="claude", prompt="hi"))) == "agent"
    assert task_kind(_task("d", TaskSpec(pickled="eA=="))) == "function"
