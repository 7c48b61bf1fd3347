"""The leader's timer pass as pure functions of (state, now, liveness)."""

from agentflow.scheduler.timers import (
    Liveness,
    SchedulerConfig,
    due_commands,
    lock_commands,
    placement_commands,
)
from agentflow.state import StateMachine
from agentflow.state.commands import (
    AcquireLock,
    AssignTasks,
    Command,
    DeregisterWorker,
    ExpireLocks,
    MarkWorkersLost,
    NewTask,
    RearmLocks,
    RegisterWorker,
    SubmitTasks,
)

CONFIG = SchedulerConfig(worker_loss_timeout_s=1.0, lost_worker_retention_s=5.0)


class Log:
    def __init__(self) -> None:
        self.sm = StateMachine()
        self.index = 0

    def apply(self, command: Command) -> object:
        self.index += 1
        return self.sm.apply(self.index, command)


def _worker(log: Log, wid: str, now_ms: int) -> None:
    log.apply(
        RegisterWorker(
            now_ms=now_ms,
            worker_id=wid,
            group="default",
            slots=1,
            resources={},
            labels={},
            hostname="h",
        )
    )


def test_a_silent_worker_is_lost_only_a_full_timeout_after_the_leader_armed() -> None:
    log = Log()
    _worker(log, "w1", 0)
    armed = Liveness(armed_at_ms=500, last_contact_ms={})
    assert due_commands(log.sm, 1_500, armed, CONFIG) == []
    assert due_commands(log.sm, 1_501, armed, CONFIG) == [
        MarkWorkersLost(now_ms=1_501, worker_ids=["w1"])
    ]
    heard = Liveness(armed_at_ms=0, last_contact_ms={"w1": 1_400})
    assert due_commands(log.sm, 2_000, heard, CONFIG) == []


def test_a_worker_registering_after_the_loss_clock_ran_out_is_not_lost_at_once() -> None:
    log = Log()
    _worker(log, "late", 60_000)  # an heir registering long after the leader armed at 0
    armed = Liveness(armed_at_ms=0, last_contact_ms={})
    assert due_commands(log.sm, 60_500, armed, CONFIG) == []
    assert due_commands(log.sm, 61_001, armed, CONFIG) == [
        MarkWorkersLost(now_ms=61_001, worker_ids=["late"])
    ]


def test_a_lost_worker_leaves_the_registry_after_the_retention() -> None:
    log = Log()
    _worker(log, "w1", 0)
    log.apply(MarkWorkersLost(now_ms=2_000, worker_ids=["w1"]))
    live = Liveness(armed_at_ms=0)
    assert due_commands(log.sm, 7_000, live, CONFIG) == []
    assert due_commands(log.sm, 7_001, live, CONFIG) == [
        DeregisterWorker(now_ms=7_001, worker_id="w1", force=True)
    ]


def test_placement_assigns_a_queued_task_to_a_free_worker() -> None:
    log = Log()
    task = NewTask(id="t1", title="t", description="", spec={"command": "true"})
    log.apply(SubmitTasks(now_ms=0, tasks=[task]))
    _worker(log, "w1", 0)
    assert placement_commands(log.sm, 10, CONFIG) == [
        AssignTasks(now_ms=10, assignments=[("t1", "w1")])
    ]


def test_locks_are_rearmed_before_any_expiry_and_never_expire_early() -> None:
    log = Log()
    log.apply(AcquireLock(now_ms=0, name="l", session="a", ttl_ms=100))
    locks = log.sm.locks
    assert lock_commands(locks, 500, armed=False) == [RearmLocks(now_ms=500)]
    assert lock_commands(locks, 99, armed=True) == []
    assert lock_commands(locks, 100, armed=True) == [ExpireLocks(now_ms=100)]
