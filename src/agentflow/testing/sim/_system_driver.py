"""The system simulation's outside world: clients, workers and the leader's timers.

`SystemDriver` takes the key-value `ClientDriver`'s place in a `Simulation` whose nodes run
the real `StateMachine` (`SimConfig(model="system")`). Every actor is a number on the
simulation's client events: clients 1..n, workers from `_WORKER_BASE`, and `_TIMERS`, the
leader's timers. Every actor proposes through its node's command log (`SimLog`, the seam the
master's loops and routes use), as a coroutine on the simulation's `SimLoop`: a request is
answered when its entry applies at the term it was proposed in (with the result computed
there, a refusal included); it never happened when the node does not lead or another
leader's entry took its index; it is forgotten (cancelled) when the node crashes or the
request times out. An actor has at most one request in flight.

The timers are the master's two loops, fed by the scheduler's pure functions
(`agentflow.scheduler.timers`) on every node that believes it leads, on the virtual clock:
the lock keeper (re-arm every grant once per term, then expire what is due) and the
scheduler (due backoffs, workers silent too long by the in-memory liveness the workers'
heartbeats feed, lost workers kept long enough, then placement). Each pass proposes its
commands one after the other, each once the previous one applied, as the master's do; the
lock keeper is also woken at the next lease deadline (and when a grant or a wait, heard
through the log's ``subscribe``, brings it forward), not only on the scheduler's tick.

After the faults heal and the Raft cluster is live again, `judge_acknowledged` keeps the
workers and timers running until every acknowledged task has ended, then judges the ledger.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentflow.errors import AgentFlowError, NotLeaderError, UnavailableError
from agentflow.scheduler.timers import (
    Liveness,
    SchedulerConfig,
    due_commands,
    lock_commands,
    placement_commands,
)
from agentflow.state import StateMachine
from agentflow.state.commands import Command, WorkerDisconnected
from agentflow.state.events import Event, LockChanged
from agentflow.testing.sim._events import EV_CLIENT, EV_CLIENT_TIMEOUT
from agentflow.testing.sim._simlog import SimLog
from agentflow.testing.sim._simloop import SimFuture, SimLoop, SimTask
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
_KEEPER = 998  # the lock keeper woken at the next lease deadline, as the master's is
# A fault phase of 2,000 steps lasts one or two virtual seconds: the system's clocks are
# scaled to it, so that workers are lost, and lost ones leave, within a run.
TIMER_TICK_MS = 30
SCHEDULER = SchedulerConfig(
    worker_loss_timeout_s=0.3, lost_worker_retention_s=1.5, tick_s=TIMER_TICK_MS / 1000
)
SETTLE_MS = 20_000  # after healing: every acknowledged task has ended within this
_LOST = object()  # a request that certainly did not happen (not led, or lost its place)


@dataclass(slots=True, kw_only=True)
class _Request:
    actor: int
    op: int
    node_id: str
    command: Command
    task: SimTask | None = None


@dataclass(slots=True, kw_only=True)
class _LeaderTimers:
    """One leader's timer state (per node, incarnation and term): reset on every change."""

    incarnation: int
    term: int
    armed_at: int
    contacts: dict[str, int] = field(default_factory=dict)
    locks_armed: bool = False
    keeper: SimTask | None = None  # the lock keeper's pass, while it runs
    scheduler: SimTask | None = None  # the scheduler's pass, while it runs

    def idle(self, task: SimTask | None) -> bool:
        return task is None or task.done


class SystemDriver:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.rng = sim.rng
        self.ledger = Ledger()
        self.book = DigestBook()
        self.clients = [SystemClient(self, n) for n in range(1, sim.config.clients + 1)]
        self.workers = [SimWorker(self, n) for n in range(1, self.rng.randint(2, 3) + 1)]
        self.loop = SimLoop()
        self._logs: dict[str, SimLog] = {}
        self._tasks: dict[str, list[SimTask]] = {}  # by node: cancelled when it crashes
        self._ops = 0
        self._busy: dict[int, _Request] = {}
        self._timers: dict[str, _LeaderTimers] = {}
        self._keeper_wake: int | None = None  # when the lock keeper is woken next

    def model(self) -> SystemModel:
        """The factory the nodes make their replica from."""
        return SystemModel(self.book)

    # -- what actors see ------------------------------------------------------------------

    def target(self) -> SimNode | None:
        return self.sim.leader()

    def machine(self, node: SimNode) -> StateMachine:
        return self.log(node).machine

    def log(self, node: SimNode) -> SimLog:
        """The node's command log (one for all its incarnations)."""
        log = self._logs.get(node.id)
        if log is None:
            log = self._logs[node.id] = SimLog(node, loop=self.loop, io=self.sim.after_io)
            log.subscribe(lambda events: self._lock_events(node, events))
        return log

    def connected_agents(self) -> list[str]:
        return [c.agent for c in self.clients if c.connected]

    def disconnected(self, worker_id: str) -> None:
        """A worker's session ended uncleanly: the leader proposes it offline (no answer)."""
        node = self.target()
        if node is not None and node.alive:
            command = WorkerDisconnected(now_ms=self.sim.now_ms, worker_id=worker_id)
            self.sim.trace(f"{self.sim.now_ms} session {worker_id} closed @{node.id}")
            self._start(node, self._tell(self.log(node), command), "disconnected")
            self.loop.run()

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
            self._timer_pass()
            sim.schedule(TIMER_TICK_MS, EV_CLIENT, _TIMERS)
            return
        if actor == _KEEPER:
            if self._keeper_wake is not None and self._keeper_wake <= now:
                self._keeper_wake = None
            self._timer_pass(keeper_only=True)
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
        if node is None or not node.alive:
            return
        self._ops += 1
        request = _Request(actor=actor, op=self._ops, node_id=node.id, command=command)
        self._busy[actor] = request
        sim.trace(f"{sim.now_ms} a{actor} {type(command).__name__} @{node.id}")
        request.task = self._start(node, self._ask(request, self.log(node)), f"a{actor}")
        self.loop.run()
        if self._busy.get(actor) is request:
            sim.schedule(sim.config.client_timeout_ms, EV_CLIENT_TIMEOUT, actor, request.op)

    async def _ask(self, request: _Request, log: SimLog) -> None:
        try:
            result: object = await log.propose(request.command)
        except (NotLeaderError, UnavailableError):
            result = _LOST  # not led there, or another leader's entry took its index
        except AgentFlowError as exc:
            result = exc  # the state machine refused it: that is the answer
        del self._busy[request.actor]
        if result is not _LOST:
            self._answer(request, result)

    async def _tell(self, log: SimLog, command: Command) -> None:
        try:
            await log.propose(command)
        except AgentFlowError:
            return  # nobody waits for the answer

    def _start(self, node: SimNode, coro: Coroutine[SimFuture, None, None], name: str) -> SimTask:
        tasks = [task for task in self._tasks.get(node.id, ()) if not task.done]
        task = self.loop.start(coro, name)
        tasks.append(task)
        self._tasks[node.id] = tasks
        return task

    def time_out(self, actor: int, op: object) -> None:
        request = self._busy.get(actor)
        if request is not None and request.op == op:
            self._forget(request)

    def _forget(self, request: _Request) -> None:
        self._busy.pop(request.actor, None)
        if request.task is not None:
            request.task.cancel()

    def forget_node(self, node_id: str) -> None:
        """The node crashed: whatever waited on it never hears back."""
        for request in [r for r in self._busy.values() if r.node_id == node_id]:
            self._forget(request)
        for task in self._tasks.pop(node_id, ()):
            task.cancel()
        self._timers.pop(node_id, None)

    def on_applied(self, node: SimNode, applied: list[Applied]) -> None:
        """Committed grants go to the ledger; the batch's events to the log's subscribers.
        (Requests are answered by their node's driver, through their log.)"""
        model = node.model
        if applied and isinstance(model, SystemModel):  # grants by acquire or by a queue
            for name, token in model.lock_tokens.items():
                self.ledger.on_grant(name, token)
        self.log(node).published()

    def _answer(self, request: _Request, result: object) -> None:
        if request.actor >= _WORKER_BASE:
            self.workers[request.actor - _WORKER_BASE].answered(request.command, result)
        else:
            self.clients[request.actor - 1].answered(request.command, result, self.sim.now_ms)

    def on_reads(self, node: SimNode, contexts: list[bytes]) -> None:
        """Reads through the log (``read_barrier``) that the node can now serve."""
        self.log(node).released(contexts)

    # -- the leader's timers --------------------------------------------------------------

    def _timer_pass(self, *, keeper_only: bool = False) -> None:
        """Start the lock keeper's and the scheduler's pass on every node that believes it
        leads, unless the previous one still waits for its commands to apply."""
        now = self.sim.now_ms
        for node in list(self.sim.nodes.values()):
            log = self.log(node)
            if node.raft is None or not log.is_leader:
                continue
            term = node.raft.status.term
            timers = self._timers.get(node.id)
            if timers is None or (timers.incarnation, timers.term) != (node.incarnation, term):
                if timers is not None:  # leadership changed: the old passes are over
                    for task in (timers.keeper, timers.scheduler):
                        if task is not None:
                            task.cancel()
                timers = _LeaderTimers(incarnation=node.incarnation, term=term, armed_at=now)
                self._timers[node.id] = timers
            if timers.idle(timers.keeper):
                timers.keeper = self._start(node, self._keep_locks(log, timers), "keeper")
            if timers.idle(timers.scheduler) and not keeper_only:
                timers.scheduler = self._start(node, self._schedule(log, timers), "scheduler")
        self.loop.run()

    async def _keep_locks(self, log: SimLog, timers: _LeaderTimers) -> None:
        """The lock keeper's pass (as `agentflow.scheduler.lockkeeper` runs it)."""
        try:
            if not timers.locks_armed:
                for command in lock_commands(log.machine.locks, self.sim.now_ms, armed=False):
                    await self._timer_propose(log, command)
                timers.locks_armed = True
            for command in lock_commands(log.machine.locks, self.sim.now_ms, armed=True):
                await self._timer_propose(log, command)
        except AgentFlowError:
            return  # refused, deposed, or lost its place: the next tick tries again
        self._wake_keeper(log)

    def _lock_events(self, node: SimNode, events: list[Event]) -> None:
        """A grant or a wait may bring the next deadline forward (as the master's keeper
        hears through ``subscribe``)."""
        timers = self._timers.get(node.id)
        if timers is None or not timers.locks_armed or timers.incarnation != node.incarnation:
            return
        if any(isinstance(e, LockChanged) and e.kind in ("granted", "waiting") for e in events):
            self._wake_keeper(self.log(node))

    def _wake_keeper(self, log: SimLog) -> None:
        """Wake the lock keeper at the next deadline, not at the next tick."""
        due = log.machine.locks.next_deadline_ms() if log.is_leader else None
        if due is None:
            return
        now = self.sim.now_ms
        at = max(due, now + 1)
        if self._keeper_wake is not None and now < self._keeper_wake <= at:
            return  # woken by then anyway
        self._keeper_wake = at
        self.sim.schedule(at - now, EV_CLIENT, _KEEPER)

    async def _schedule(self, log: SimLog, timers: _LeaderTimers) -> None:
        """The scheduler's pass (as `agentflow.scheduler.loop` runs it)."""
        now = self.sim.now_ms
        liveness = Liveness(armed_at_ms=timers.armed_at, last_contact_ms=timers.contacts)
        try:
            for command in due_commands(log.machine, now, liveness, SCHEDULER):
                await self._timer_propose(log, command)
            for command in placement_commands(log.machine, self.sim.now_ms, SCHEDULER):
                await self._timer_propose(log, command)
        except AgentFlowError:
            return

    async def _timer_propose(self, log: SimLog, command: Command) -> Any:
        self.sim.trace(f"{self.sim.now_ms} timer {type(command).__name__} @{log.node_id}")
        return await log.propose(command)

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
