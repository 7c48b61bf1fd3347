"""A replica that restored a snapshot orders tied queued tasks as one that applied the whole
log does, and so places them alike. (It did not: replicas diverged.)

Tasks with the same static key (priority, enqueue time in ms, retries) are ordered by when
they were pushed onto the ready queue (``ReadyQueue``'s sequence number). A snapshot does not
hold that order; restore pushes the queued tasks in task-table (submission) order instead. So
whenever tied tasks were pushed out of submission order (a lost worker's attempts requeued in
the order it held them, backed-off tasks released by due time, a withdrawn attempt put back
with its old enqueue time), the restored replica's next placement picks another task.

Found by tests/state/test_tables_golden.py's sequence (restore halfway, then compare): 16 of
seeds 100-399 diverge, e.g. seed 134 at entry 608, identically on the code before and after
the split into tables. The snapshot now keeps each group's push order (``"ready"``), and
restore pushes the queued tasks in that order; a snapshot without it restores as before.
"""

from __future__ import annotations

from agentflow.state import StateMachine
from agentflow.state.commands import (
    AssignTasks,
    Command,
    MarkWorkersLost,
    NewTask,
    RegisterWorker,
    SubmitTasks,
    decode_command,
    encode_command,
)


def _worker(worker_id: str, slots: int) -> RegisterWorker:
    return RegisterWorker(
        now_ms=1,
        worker_id=worker_id,
        group="default",
        slots=slots,
        resources={},
        labels={},
        hostname="h",
    )


def _task(task_id: str, group: str = "default") -> NewTask:
    return NewTask(id=task_id, title=task_id, description="", spec={"command": "true"}, group=group)


def test_a_restored_replica_places_tied_tasks_as_the_others_do() -> None:
    steady = StateMachine()
    log: list[Command] = [
        _worker("w1", slots=2),
        SubmitTasks(now_ms=2, tasks=[_task("t1"), _task("t2")]),
        AssignTasks(now_ms=3, assignments=[("t2", "w1"), ("t1", "w1")]),
        MarkWorkersLost(now_ms=4, worker_ids=["w1"]),  # requeues t2, then t1, both at 4 ms
    ]
    for index, command in enumerate(log, start=1):
        steady.apply(index, decode_command(encode_command(command)))
    restored = StateMachine()
    restored.restore(steady.snapshot())
    assert restored.digest() == steady.digest()
    rest: list[Command] = [
        _worker("w2", slots=1),
        SubmitTasks(now_ms=5, tasks=[_task("t3", group="other")], place=True),  # places w2
    ]
    for index, command in enumerate(rest, start=len(log) + 1):
        steady.apply(index, decode_command(encode_command(command)))
        restored.apply(index, decode_command(encode_command(command)))
    assert restored.workers["w2"].running == steady.workers["w2"].running
    assert restored.digest() == steady.digest()
