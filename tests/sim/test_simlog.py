"""The simulator's node is a CommandLog: proposals resolve only once applied at their term.

A calm three-node system cluster without its workload (no clients, workers or timers act:
only the nodes tick), driven event by event, and the test's own coroutines on the
simulation's loop, proposing through the leader's `SimLog` as the master's loops do.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from agentflow.errors import ConflictError, NotLeaderError, UnavailableError
from agentflow.state import encode_command
from agentflow.state.commands import NewTask, RenewLock, SubmitTasks
from agentflow.state.events import Event, TasksQueued
from agentflow.testing.sim import SimConfig
from agentflow.testing.sim._shell import SimNode
from agentflow.testing.sim._simlog import SimLog, _conforms
from agentflow.testing.sim._simloop import SimFuture, SimLoop, SimTask
from agentflow.testing.sim._simulation import Simulation
from agentflow.testing.sim._system_driver import SystemDriver


def _until(sim: Simulation, condition: Callable[[], bool], *, within_ms: int = 20_000) -> None:
    deadline = sim.now_ms + within_ms
    while not condition():
        assert sim.now_ms < deadline and sim.step(), "the condition never held"


def _calm_cluster(seed: int = 5) -> tuple[Simulation, SystemDriver, SimNode]:
    """Three nodes, a leader elected and its first entry applied everywhere."""
    sim = Simulation(SimConfig(seed=seed, nodes=3, model="system", faults=False))
    driver = sim.clients
    assert isinstance(driver, SystemDriver)
    _until(sim, lambda: sim.leader() is not None)
    leader = sim.leader()
    assert leader is not None and leader.raft is not None
    last = leader.raft.status.last_index
    _until(sim, lambda: all(node.applied >= last for node in sim.nodes.values()))
    return sim, driver, leader


class _Outcome:
    """What a coroutine on the simulation's loop ended with."""

    def __init__(self) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.task: SimTask | None = None

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done


def _run(driver: SystemDriver, make: Callable[[], Coroutine[SimFuture, None, Any]]) -> _Outcome:
    outcome = _Outcome()

    async def body() -> None:
        try:
            outcome.result = await make()
        except Exception as exc:
            outcome.error = exc

    outcome.task = driver.loop.start(body(), "test")
    driver.loop.run()
    return outcome


def _submit(task_id: str) -> SubmitTasks:
    task = NewTask(id=task_id, title=task_id, description="", spec={"command": "true"})
    return SubmitTasks(now_ms=0, tasks=[task])


def test_the_sim_log_implements_the_command_log_protocol() -> None:
    sim, driver, leader = _calm_cluster()
    log = driver.log(leader)
    assert _conforms(log) is log  # mypy checks the assignment in _simlog.py
    assert isinstance(log, SimLog) and log.is_leader
    assert log.machine is driver.machine(leader)
    followers = [driver.log(n) for n in sim.nodes.values() if n is not leader]
    assert not any(f.is_leader for f in followers)


def test_a_proposal_resolves_only_once_applied_at_its_term() -> None:
    sim, driver, leader = _calm_cluster()
    assert leader.raft is not None
    log = driver.log(leader)
    heard: list[Event] = []
    log.subscribe(heard.extend)
    command = _submit("t1")
    outcome = _run(driver, lambda: log.propose(command))
    index, term = leader.raft.status.last_index, leader.raft.status.term
    assert not outcome.done and leader.applied < index  # appended, not committed yet
    _until(sim, lambda: outcome.done)
    assert outcome.error is None, outcome.error
    assert leader.applied >= index
    assert sim.checker.applied_data()[index] == (term, encode_command(command))
    assert outcome.result == [("t1", True)]
    assert log.machine.tasks.get("t1") is not None
    assert any(isinstance(e, TasksQueued) for e in heard)


def test_a_refused_command_raises_its_typed_error_once_applied() -> None:
    sim, driver, leader = _calm_cluster()
    log = driver.log(leader)
    renew = RenewLock(now_ms=0, name="nobody-holds-it", session="s", token=7, ttl_ms=100)
    outcome = _run(driver, lambda: log.propose(renew))
    _until(sim, lambda: outcome.done)
    assert isinstance(outcome.error, ConflictError), outcome.error


def test_a_proposal_fails_when_another_leaders_entry_takes_its_index() -> None:
    sim, driver, old = _calm_cluster()
    assert old.raft is not None
    others = [n for n in sim.nodes.values() if n is not old]
    sim.network.partition([[old.id], [n.id for n in others]])
    command = _submit("lost")
    outcome = _run(driver, lambda: driver.log(old).propose(command))
    index, term = old.raft.status.last_index, old.raft.status.term

    def another_applied_it() -> bool:
        leader = sim.leader()
        return leader is not None and leader is not old and leader.applied >= index

    _until(sim, another_applied_it)
    assert not outcome.done  # the old leader has not applied that index yet
    sim.network.heal()
    _until(sim, lambda: outcome.done)
    assert isinstance(outcome.error, UnavailableError), outcome.error
    assert "lost its place" in str(outcome.error)
    taken = sim.checker.applied_data()[index]
    assert taken[0] > term and taken[1] != encode_command(command)
    assert driver.log(old).machine.tasks.get("lost") is None


def test_a_follower_refuses_at_once() -> None:
    sim, driver, leader = _calm_cluster()
    follower = next(n for n in sim.nodes.values() if n is not leader)
    outcome = _run(driver, lambda: driver.log(follower).propose(_submit("t")))
    assert outcome.done and isinstance(outcome.error, NotLeaderError)


def test_a_read_barrier_returns_once_the_read_index_is_applied() -> None:
    sim, driver, leader = _calm_cluster()
    write = _run(driver, lambda: driver.log(leader).propose(_submit("r1")))
    _until(sim, lambda: write.done)
    follower = next(n for n in sim.nodes.values() if n is not leader)
    log = driver.log(follower)
    behind = log.machine.tasks.get("r1") is None
    read = _run(driver, log.read_barrier)
    assert not read.done  # the leader confirms its leadership by a heartbeat round first
    _until(sim, lambda: read.done)
    assert read.error is None, read.error
    assert behind and log.machine.tasks.get("r1") is not None  # committed before: visible


def test_a_crash_cancels_what_waits_on_the_node() -> None:
    sim, driver, leader = _calm_cluster()
    outcome = _run(driver, lambda: driver.log(leader).propose(_submit("gone")))
    waiter = driver._start(leader, _never(driver.loop), "waiter")  # as the actors' are
    sim.crash_node(leader)
    assert waiter.done
    _until(sim, lambda: sim.leader() is not None, within_ms=5_000)
    assert outcome.task is not None and not outcome.task.done  # the test's own task waits
    outcome.task.cancel()
    assert outcome.done and outcome.error is None
    down = _run(driver, lambda: driver.log(leader).propose(_submit("x")))
    assert isinstance(down.error, UnavailableError)


async def _never(loop: SimLoop) -> None:
    await loop.future()


def test_the_loop_resumes_in_order_and_never_resumes_a_cancelled_task() -> None:
    loop = SimLoop()
    seen: list[str] = []
    first, second = loop.future(), loop.future()

    async def wait(name: str, future: SimFuture) -> None:
        seen.append(f"{name} waits")
        seen.append(f"{name} got {await future}")

    a = loop.start(wait("a", first), "a")
    b = loop.start(wait("b", second), "b")
    loop.run()
    second.set_result(2)
    first.set_result(1)
    first.set_result(99)  # resolved once: the first answer stands
    b.cancel()
    loop.run()
    assert seen == ["a waits", "b waits", "a got 1"]
    assert a.done and b.done


@pytest.mark.parametrize("seed", [5, 6])
def test_a_proposal_through_the_log_replays_exactly(seed: int) -> None:
    def once() -> tuple[str, Any]:
        sim, driver, leader = _calm_cluster(seed)
        outcome = _run(driver, lambda: driver.log(leader).propose(_submit("t")))
        _until(sim, lambda: outcome.done)
        return sim.digest(), outcome.result

    assert once() == once()
