"""A replica restored from a snapshot keeps the ready queue's order among equal keys.

Found by the system simulation (`--model system --seed-base 85 --steps 2000`): two tasks
requeued by one `MarkWorkersLost` tie on their static key; the live queue breaks the tie by
push order, a restored one by table order, so the next placement differed between replicas.
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
)


class Log:
    def __init__(self) -> None:
        self.sm = StateMachine()
        self.index = 0

    def apply(self, command: Command) -> object:
        self.index += 1
        return self.sm.apply(self.index, command)


def _tied_queue() -> Log:
    log = Log()
    tasks = [NewTask(id=t, title=t, description="", spec={"command": "true"}) for t in "ab"]
    log.apply(SubmitTasks(now_ms=0, tasks=tasks))
    for worker in ("w1", "w2"):
        log.apply(
            RegisterWorker(
                now_ms=0,
                worker_id=worker,
                group="default",
                slots=1,
                resources={},
                labels={},
                hostname=worker,
            )
        )
    log.apply(AssignTasks(now_ms=0, assignments=[("b", "w1"), ("a", "w2")]))
    # Requeued in the same entry at the same time: "b" first, then "a", with equal keys.
    log.apply(MarkWorkersLost(now_ms=5_000, worker_ids=["w1", "w2"]))
    return log


def test_the_order_among_equal_keys_survives_a_snapshot() -> None:
    log = _tied_queue()
    live = list(log.sm.tasks.ready.ordered("default"))
    assert live == ["b", "a"]
    restored = StateMachine()
    restored.restore(log.sm.snapshot())
    assert list(restored.tasks.ready.ordered("default")) == live


def test_a_restored_replica_places_like_the_others() -> None:
    log = _tied_queue()
    restored = StateMachine()
    restored.restore(log.sm.snapshot())
    new = RegisterWorker(
        now_ms=6_000,
        worker_id="w3",
        group="default",
        slots=1,
        resources={},
        labels={},
        hostname="w3",
    )
    log.apply(new)
    restored.apply(log.index, new)
    both = [sm.place(log.index, 6_000) for sm in (log.sm, restored)]
    assert both[0] == both[1] == ["b"]
    assert restored.digest() == log.sm.digest()
