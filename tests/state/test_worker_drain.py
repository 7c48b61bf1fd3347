"""Who drained a worker, in the replicated state: a drain the worker asked for itself ends when
another instance registers under its id; an operator's drain lasts until an operator lifts it.
Commands go through their wire encoding, as they do through the log."""

from __future__ import annotations

from agentflow.state import WorkerRecord, WorkerState
from agentflow.state.commands import (
    RegisterWorker,
    SetWorkerDraining,
    WorkerDisconnected,
)
from agentflow.state.records import Drain
from tests.state.replica import StrictLog as Log


def register(log: Log, digest: str) -> object:
    return log(
        RegisterWorker(
            now_ms=log.index,
            worker_id="w1",
            group="default",
            slots=1,
            resources={},
            labels={},
            hostname="h",
            secret_hash=digest,
        )
    )


def drain(log: Log, *, by_worker: bool, draining: bool = True) -> None:
    log(SetWorkerDraining(now_ms=0, worker_id="w1", draining=draining, by_worker=by_worker))


def restart(log: Log, digest: str) -> object:
    """The process ends (bye, socket closed) and another instance registers."""
    log(WorkerDisconnected(now_ms=0, worker_id="w1"))
    return register(log, digest)


def test_a_drain_the_worker_asked_for_ends_with_its_instance() -> None:
    log = Log()
    register(log, "a")
    drain(log, by_worker=True)
    assert log.sm.workers["w1"].state is WorkerState.DRAINING
    # The same instance resuming (a network blip) is still draining...
    assert register(log, "a") == {"worker_id": "w1", "cancel": [], "drain": "worker"}
    # ...a new instance starts active.
    assert restart(log, "b") == {"worker_id": "w1", "cancel": [], "drain": "none"}
    assert log.sm.workers["w1"].state is WorkerState.ACTIVE


def test_an_operator_drain_outlives_instances_until_lifted() -> None:
    log = Log()
    register(log, "a")
    drain(log, by_worker=False)
    drain(log, by_worker=True)  # the worker's own drain never weakens the operator's
    assert restart(log, "b")["drain"] == "operator"  # type: ignore[index]
    assert log.sm.workers["w1"].state is WorkerState.DRAINING
    drain(log, by_worker=False, draining=False)
    assert log.sm.workers["w1"].state is WorkerState.ACTIVE
    assert log.sm.workers["w1"].drain is Drain.NONE


def test_an_operator_drain_replaces_the_workers_own() -> None:
    log = Log()
    register(log, "a")
    drain(log, by_worker=True)
    drain(log, by_worker=False)
    assert restart(log, "b")["drain"] == "operator"  # type: ignore[index]


def test_a_record_from_before_drain_origins_reads_as_an_operator_drain() -> None:
    log = Log()
    register(log, "a")
    wire = log.sm.workers["w1"].to_wire()
    assert wire["drain"] == "none"
    del wire["drain"]
    old = WorkerRecord.from_wire({**wire, "draining": True})
    assert old.drain is Drain.OPERATOR and old.draining
    assert WorkerRecord.from_wire({**wire, "draining": False}).drain is Drain.NONE
    assert WorkerRecord.from_wire(log.sm.workers["w1"].to_wire()) == log.sm.workers["w1"]
