"""The system simulation's outside world: clients, workers and the leader's timers.

`SystemDriver` takes the key-value `ClientDriver`'s place in a `Simulation` whose nodes run
the real `StateMachine` (`SimConfig(model="system")`). Every actor is a number on the
simulation's client events: clients 1..n, workers from `_WORKER_BASE`, and `_TIMERS`, the
leader's timer pass, which runs the scheduler's pure functions (`agentflow.scheduler.timers`)
on every node that believes it leads, on the virtual clock, with the in-memory liveness the
workers' heartbeats feed. An actor has at most one request in flight; it is answered when the
node it proposed on applies that index (the result computed there), refused when another
entry took the slot, forgotten when the node crashes or the request times out.

After the faults heal and the Raft cluster is live again, `judge_acknowledged` keeps the
workers and timers running until every acknowledged task has ended, then judges the ledger.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agentflow.raft import ProposalDroppedError, StateRole
from agentflow.scheduler.timers import (
    Liveness,
    SchedulerConfig,
    due_commands,
    lock_commands,
    placement_commands,
)
from agentflow.state import StateMachine
from agentflow.state.commands import Command, RearmLocks, WorkerDisconnected, encode_command
from agentflow.testing.sim._events import EV_CLIENT, EV_CLIENT_TIMEOUT
from agentflow.testing.sim._system import DigestBook, SystemModel
from agentflow.testing.sim._system_clients import SystemClient
from agentflow.testing.sim._system_ledger import Ledger
from agentflow.testing.sim._system_workers import SimWorker

if TYPE_CHECKING:
    from agentflow.testing.sim._shell import Applied, SimNode
    from agentflow.testing.sim._simulation import Simulation

__all__ = ["SystemDriver"]

_WORKER_BASE = 100
_TIMERS = 999
# A fault phase of 2,000 steps lasts one or two virtual seconds: the system's clocks are
# scaled to it, so that workers are lost, and lost ones leave, within a run.
TIMER_TICK_MS = 30
SCHEDULER = SchedulerConfig(
    worker_loss_timeout_s=0.3, lost_worker_retention_s=1.5, tick_s=TIMER_TICK_MS / 1000
)
SETTLE_MS = 20_000  # after healing: every acknowledged task has ended within this


@dataclass(slots=True, kw_only=True)
class _Request:
    actor: int
    op: int
    node_id: str
    incarnation: int
    index: int
    data: bytes
    command: Command


@dataclass(slots=True, kw_only=True)
class _LeaderTimers:
    """One leader's timer state (per node, incarnation and term): reset on every change."""

    incarnation: int
    term: int
    armed_at: int
    contacts: dict[str, int] = field(default_factory=dict)
    locks_armed: bool = False
    rearm: tuple[int, bytes] | None = None
    inflight: dict[int, bytes] = field(default_factory=dict)


class SystemDriver:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.rng = sim.rng
        self.ledger = Ledger()
        self.book = DigestBook()
        self.clients = [SystemClient(self, n) for n in range(1, sim.config.clients + 1)]
        self.workers = [SimWorker(self, n) for n in range(1, self.rng.randint(2, 3) + 1)]
        self._ops = 0
        self._busy: dict[int, _Request] = {}
        self._by_slot: dict[tuple[str, int], _Request] = {}
        self._timers: dict[str, _LeaderTimers] = {}
        self._settling = False

    def model(self) -> SystemModel:
        """The factory the nodes make their replica from."""
        return SystemModel(self.book)

    # -- what actors see ------------------------------------------------------------------

    def target(self) -> SimNode | None:
        return self.sim.leader()

    def machine(self, node: SimNode) -> StateMachine:
        model = node.model
        assert isinstance(model, SystemModel), type(model)
        return model.sm

    def connected_agents(self) -> list[str]:
        return [c.agent for c in self.clients if c.connected]

    def disconnected(self, worker_id: str) -> None:
        """A worker's session ended uncleanly: the leader proposes it offline (no answer)."""
        node = self.target()
        if node is not None and node.raft is not None:
            command = WorkerDisconnected(now_ms=self.sim.now_ms, worker_id=worker_id)
            with contextlib.suppress(ProposalDroppedError):
                node.raft.propose(encode_command(command))
                self.sim.trace(f"{self.sim.now_ms} session {worker_id} closed @{node.id}")
                self.sim.after_io(node)

    def touch(self, node: SimNode, worker_id: str) -> None:
        timers = self._timers.get(node.id)
        if timers is not None and timers.incarnation == node.incarnation:
            timers.contacts[worker_id] = self.sim.now_ms

    # -- the ClientDriver interface -------------------------------------------------------

    def begin(self) -> None:
        for client in self.clients:
            self.sim.schedule(self.rng.randint(20, 80), EV_CLIENT, client.number)
        for n, _ in enumerate(self.workers):
            self.sim.schedule(self.rng.randint(20, 80), EV_CLIENT, _WORKER_BASE + n)
        self.sim.schedule(TIMER_TICK_MS, EV_CLIENT, _TIMERS)

    def act(self, actor: int) -> None:
        sim = self.sim
        now = sim.now_ms
        if actor == _TIMERS:
            self._timer_pass(now)
            sim.schedule(TIMER_TICK_MS, EV_CLIENT, _TIMERS)
            return
        if actor >= _WORKER_BASE:
            worker = self.workers[actor - _WORKER_BASE]
            faults = sim.config.faults and not sim.quiet
            command = worker.act(now, faults=faults, busy=actor in self._busy)
            sim.schedule(self.rng.randint(20, 60), EV_CLIENT, actor)
        else:
            if sim.quiet:
                return  # clients stop when the faults heal
            command = None if actor in self._busy else self.clients[actor - 1].act(now)
            sim.schedule(self.rng.randint(5, 40), EV_CLIENT, actor)
        if command is not None:
            self._propose(actor, command)

    def _propose(self, actor: int, command: Command) -> None:
        sim = self.sim
        node = self.target()
        if node is None or node.raft is None:
            return
        data = encode_command(command)
        try:
            index = node.raft.propose(data)
        except ProposalDroppedError:
            return
        self._ops += 1
        request = _Request(
            actor=actor,
            op=self._ops,
            node_id=node.id,
            incarnation=node.incarnation,
            index=index,
            data=data,
            command=command,
        )
        self._busy[actor] = request
        self._by_slot[(node.id, index)] = request
        sim.schedule(sim.config.client_timeout_ms, EV_CLIENT_TIMEOUT, actor, request.op)
        sim.trace(f"{sim.now_ms} a{actor} {type(command).__name__} @{node.id}:{index}")
        sim.after_io(node)

    def time_out(self, actor: int, op: object) -> None:
        request = self._busy.get(actor)
        if request is not None and request.op == op:
            self._forget(request)

    def _forget(self, request: _Request) -> None:
        self._busy.pop(request.actor, None)
        self._by_slot.pop((request.node_id, request.index), None)

    def forget_node(self, node_id: str) -> None:
        for request in [r for r in self._busy.values() if r.node_id == node_id]:
            self._forget(request)
        self._timers.pop(node_id, None)

    def on_applied(self, node: SimNode, applied: list[Applied]) -> None:
        """Answers for the requests proposed on ``node``; committed grants; armed timers."""
        timers = self._timers.get(node.id)
        model = node.model
        if applied and isinstance(model, SystemModel):  # grants by acquire or by a queue
            for name, token in model.lock_tokens.items():
                self.ledger.on_grant(name, token)
        for entry in applied:
            if timers is not None and timers.rearm == (entry.index, entry.data):
                timers.locks_armed = True
            request = self._by_slot.pop((node.id, entry.index), None)
            if request is None or request.incarnation != node.incarnation:
                continue
            self._busy.pop(request.actor, None)
            if entry.data != request.data:
                continue  # another leader's entry took the slot: it never happened
            self._answer(request, entry.result)

    def _answer(self, request: _Request, result: object) -> None:
        if request.actor >= _WORKER_BASE:
            self.workers[request.actor - _WORKER_BASE].answered(request.command, result)
        else:
            self.clients[request.actor - 1].answered(request.command, result, self.sim.now_ms)

    def on_reads(self, node: SimNode, contexts: list[bytes]) -> None:
        return None  # the system's clients read the state of the node they talk to

    # -- the leader's timers --------------------------------------------------------------

    def _timer_pass(self, now: int) -> None:
        for node in list(self.sim.nodes.values()):
            if node.raft is None or node.role is not StateRole.LEADER:
                continue
            term = node.raft.status.term
            timers = self._timers.get(node.id)
            if timers is None or (timers.incarnation, timers.term) != (node.incarnation, term):
                timers = _LeaderTimers(incarnation=node.incarnation, term=term, armed_at=now)
                self._timers[node.id] = timers
            for index in [i for i in timers.inflight if i <= node.applied]:
                del timers.inflight[index]
            if timers.inflight:
                continue  # the previous pass's commands are not applied yet
            sm = self.machine(node)
            commands: list[Command] = []
            if timers.rearm is None:
                commands += lock_commands(sm.locks, now, armed=False)
            elif timers.locks_armed:
                commands += lock_commands(sm.locks, now, armed=True)
            liveness = Liveness(armed_at_ms=timers.armed_at, last_contact_ms=timers.contacts)
            commands += due_commands(sm, now, liveness, SCHEDULER)
            commands += placement_commands(sm, now, SCHEDULER)
            for command in commands:
                if not self._propose_timer(node, timers, command):
                    break

    def _propose_timer(self, node: SimNode, timers: _LeaderTimers, command: Command) -> bool:
        assert node.raft is not None
        data = encode_command(command)
        try:
            index = node.raft.propose(data)
        except ProposalDroppedError:
            return False
        timers.inflight[index] = data
        if isinstance(command, RearmLocks):
            timers.rearm = (index, data)
        self.sim.trace(f"{self.sim.now_ms} timer {type(command).__name__} @{node.id}:{index}")
        self.sim.after_io(node)
        return node.raft is not None

    # -- after healing --------------------------------------------------------------------

    def judge_acknowledged(self) -> None:
        """Run on (workers, timers; no clients) until every acknowledged task ended; judge."""
        from agentflow.testing.sim._simulation import LivenessViolationError

        sim = self.sim
        deadline = sim.now_ms + SETTLE_MS
        while True:
            leader = sim.leader()
            if leader is not None and not self.ledger.unsettled(self.machine(leader)):
                break
            if sim.now_ms > deadline or not sim.step():
                pending = self.ledger.unsettled(self.machine(leader)) if leader else ["?"]
                raise LivenessViolationError(
                    f"tasks not ended {SETTLE_MS} ms after healing: {pending[:8]}"
                )
        self.ledger.judge(self.machine(leader), sim.now_ms)
        sim.trace(f"{sim.now_ms} settled {leader.applied} {leader.model.digest().hex()}")
        sim.stats["acked_tasks"] = len(self.ledger.tasks)
        sim.stats["resource_writes"] = self.ledger.writes
        sim.stats["digests_compared"] = self.book.compared

    def resolve_open_writes(self, final_term: int) -> None:
        return None  # no linearizable registers here
