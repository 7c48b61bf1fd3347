"""The event loop: one heap of timed events, one `random.Random`, the whole cluster.

A step is one event taken off the heap — a node's tick, a message copy arriving, a client
acting, the nemesis striking — plus every Ready it causes, performed and checked at once.
Nothing else decides the order of things, so a seed is a complete description of a run.

A run has two phases. During `steps` steps faults are injected (see `_nemesis`); then the
network heals, crashed members restart, clients stop, and the cluster must elect a leader
and commit a fresh entry on every member within `liveness_ticks` ticks. Then the histories
are judged: logs cross-checked, state machines compared, acknowledged writes found in the
log, client history checked for linearizability.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from agentflow.raft import (
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    StateRole,
    bootstrap,
)
from agentflow.testing.linearizability import History, Verdict, check_history
from agentflow.testing.sim._clients import ClientDriver
from agentflow.testing.sim._config import FaultMix, SimConfig, draw_raft_config, lone_for
from agentflow.testing.sim._disk import DiskFaults
from agentflow.testing.sim._events import (
    EV_CAMPAIGN,
    EV_CLIENT,
    EV_CLIENT_TIMEOUT,
    EV_DELIVER,
    EV_NEMESIS,
    EV_RETIRE,
    EV_TICK,
    EV_WRITE,
)
from agentflow.testing.sim._figure8 import figure8_for
from agentflow.testing.sim._invariants import InvariantViolationError, SafetyChecker
from agentflow.testing.sim._kv import KvCommand, KvStore
from agentflow.testing.sim._nemesis import Nemesis
from agentflow.testing.sim._network import LinkFaults, SimNetwork
from agentflow.testing.sim._shell import SimNode
from agentflow.testing.sim._system_driver import SystemDriver

__all__ = ["LivenessViolationError", "SimResult", "Simulation", "run_seed"]


class LivenessViolationError(AssertionError):
    """After every fault healed, the cluster did not elect a leader or commit in time."""


@dataclass(slots=True, kw_only=True)
class SimResult:
    config: SimConfig
    ok: bool
    digest: str
    steps: int
    failure: str | None = None
    stats: dict[str, int] = field(default_factory=dict)

    def report(self) -> str:
        head = f"seed {self.config.seed}: {'ok' if self.ok else 'FAILED'} after {self.steps} steps"
        if self.ok:
            return head
        return f"{head}\n{self.failure}\nreplay: {self.config.replay_command()}"


class Simulation:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        rng = self.rng
        self.node_count = config.nodes if config.nodes is not None else rng.choice((3, 5))
        # The aimed faults are tuned for the Raft core under the key-value model; under the
        # system model they crash leaders so often that its workload hardly commits.
        aimed = config.buggify and config.model == "kv"
        self.mix = FaultMix.draw(rng, enabled=config.faults, buggify=aimed)
        self.raft_config = draw_raft_config(rng, config)
        # BUGGIFY (swarm, on a stream of its own): some seeds found a cluster of one voter,
        # which the nemesis gives a learner and slow, crashing writes (see `Nemesis`).
        self.lone = bool(self.mix.buggify) and config.nodes is None and lone_for(config.seed)
        if self.lone:
            self.node_count = 1
        elif self.mix.buggify and figure8_for(config.seed) is not None:
            # The director's Figure 8 needs an entry of an earlier term acknowledged alone.
            self.raft_config = dataclasses.replace(self.raft_config, max_size_per_msg=1)
        self.disk_faults = DiskFaults.draw(rng, enabled=config.faults)
        self.network = SimNetwork(random.Random(rng.getrandbits(64)))
        self.checker = SafetyChecker()
        self.history = History()
        self.now_ms = 0
        self.steps = 0
        self.quiet = False
        self.final_term = 0
        self.echo: Callable[[str], None] | None = None  # prints the trace when debugging
        self.stats: dict[str, int] = {}
        self._heap: list[tuple[int, int, int, object, object]] = []
        self._seq = 0
        self._stepped: Message | None = None  # the message whose Readies are being performed
        self._digest = hashlib.blake2b(digest_size=16)
        self.nodes: dict[str, SimNode] = {}
        self._tick_ms: dict[str, int] = {}  # each node's tick period: clocks drift apart
        self._frozen_until: dict[str, int] = {}  # a node's clock stalls until then (a pause)
        self.retired: set[str] = set()
        self.crashed_at: dict[str, int] = {}  # when each node last went down
        self._next_node = 1
        # Before any node starts: a founding member applies its bootstrap entries at once,
        # and applied entries are reported to both.
        self.clients: ClientDriver | SystemDriver = (
            SystemDriver(self) if config.model == "system" else ClientDriver(self)
        )
        self.nemesis = Nemesis(self)
        # Founding members are bootstrapped as a real cluster is: the voters are written
        # into each log as committed conf-change entries 1..n. Joiners start empty.
        voters = [str(i) for i in range(1, self.node_count + 1)]
        for _ in range(self.node_count):
            storage = MemoryStorage()
            bootstrap(storage, voters)
            self.add_node(storage)

    # -- scheduling -------------------------------------------------------------------------

    def schedule(self, delay_ms: int, kind: int, a: object = None, b: object = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (self.now_ms + delay_ms, self._seq, kind, a, b))

    def freeze_clock(self, node_id: str, until_ms: int) -> None:
        """The node's ticks stop until ``until_ms`` (a process or VM pause of its timer, a
        clock running slow); it still steps every message it receives."""
        self._frozen_until[node_id] = until_ms

    def trace(self, line: str) -> None:
        self._digest.update(line.encode())
        if self.echo is not None:
            self.echo(line)

    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    # -- nodes ------------------------------------------------------------------------------

    def add_node(self, storage: MemoryStorage) -> SimNode:
        node_id = str(self._next_node)
        self._next_node += 1
        node = SimNode(
            node_id,
            storage,
            rng=random.Random(self.rng.getrandbits(64)),
            checker=self.checker,
            config=self.raft_config,
            model=self.clients.model if isinstance(self.clients, SystemDriver) else KvStore,
        )
        self.checker.register(node_id, storage)
        node.slow_writes = self.mix.leader_write_ms_max > 0 or "stall_write" in self.mix.buggify
        node.disk.faults = self.disk_faults
        # Each node's clock runs a little fast or slow: ticks are not in lockstep.
        node_tick_ms = self.config.tick_ms + self.rng.randint(-1, 1)
        self._tick_ms[node_id] = max(1, node_tick_ms)
        self.nodes[node_id] = node
        self.start_node(node)
        return node

    def start_node(self, node: SimNode) -> None:
        node.start()
        self.trace(f"{self.now_ms} start {node.id}")
        self.schedule(
            self.rng.randint(1, self._tick_ms[node.id]), EV_TICK, node.id, node.incarnation
        )
        self.after_io(node)

    def crash_node(self, node: SimNode) -> None:
        node.crash()
        self.clients.forget_node(node.id)
        self.crashed_at[node.id] = self.now_ms
        self.trace(f"{self.now_ms} crash {node.id}")

    def leader(self) -> SimNode | None:
        """The live node that believes it leads with the highest term, if any."""
        best: SimNode | None = None
        best_term = -1
        for node in self.nodes.values():
            if node.alive and node.role is StateRole.LEADER:
                term = node.storage.initial_state()[0].term
                if term > best_term:
                    best, best_term = node, term
        return best

    def after_io(self, node: SimNode, *, write_done: bool = False) -> None:
        """Perform the node's Readies (``write_done``: first finish its slow write), then
        route what they produced."""
        if node.alive and not write_done and not self.quiet and self.mix.buggify:
            if node.pending is None and node.driver is not None:
                node.driver.feed()  # what it was sent reaches the core: the nemesis sees its role
            stepped = self._stepped
            self.nemesis.before_io(node, stepped if stepped and stepped.to == node.id else None)
        if node.alive and not (node.finish_write() if write_done else node.process()):
            self.clients.forget_node(node.id)  # crashed in the middle of a Ready
            self.crashed_at[node.id] = self.now_ms
            self.trace(f"{self.now_ms} torn crash {node.id}")
        if node.write_due:
            node.write_due = False
            delay = node.fsync_ms or self.nemesis.write_delay_ms()
            self.schedule(delay, EV_WRITE, node.id, node.incarnation)
        lost_snapshots: list[str] = []
        for message in node.outbox:
            delays = self.network.delays_ms(message.from_, message.to)
            for delay in delays:
                self.schedule(delay, EV_DELIVER, message)
            if not delays and message.type is MessageType.SNAPSHOT:
                lost_snapshots.append(message.to)
        node.outbox.clear()
        if lost_snapshots and node.raft is not None:
            # The transport knows at once that a snapshot did not go out: tell the leader,
            # or it waits in snapshot state for a report that never comes.
            for peer in lost_snapshots:
                node.raft.report_snapshot(peer, False)
            self.after_io(node)
        if node.applied_now:
            self.clients.on_applied(node, node.applied_now)
            for applied in node.applied_now:
                self.nemesis.on_applied(applied)
            node.applied_now.clear()
        if node.reads_ready:
            self.clients.on_reads(node, node.reads_ready)
            node.reads_ready.clear()
        if isinstance(self.clients, SystemDriver):
            self.clients.loop.run()  # resume whoever awaits what this I/O resolved

    # -- the loop ---------------------------------------------------------------------------

    def step(self) -> bool:
        """Handle one event; False when nothing is left to happen."""
        if not self._heap:
            return False
        when, _, kind, a, b = heapq.heappop(self._heap)
        self.now_ms = when
        if kind == EV_TICK:
            self._tick(str(a), b)
        elif kind == EV_DELIVER:
            assert isinstance(a, Message)
            self._deliver(a)
        elif kind == EV_CLIENT:
            assert isinstance(a, int)
            self.clients.act(a)
        elif kind == EV_CLIENT_TIMEOUT:
            assert isinstance(a, int)
            self.clients.time_out(a, b)
        elif kind == EV_NEMESIS:
            self.nemesis.strike()
        elif kind == EV_RETIRE:
            self.nemesis.retire(str(a))
        elif kind == EV_CAMPAIGN:
            self.nemesis.campaign(str(a), own=b == "self")
        elif kind == EV_WRITE:
            self._write_done(str(a), b)
        self.steps += 1
        if self.steps % self.config.log_check_every == 0:
            self.check_logs()
        return True

    def _tick(self, node_id: str, incarnation: object) -> None:
        node = self.nodes[node_id]
        if not node.alive or node.incarnation != incarnation:
            return  # a tick of a crashed incarnation
        self.trace(f"{self.now_ms} t{node_id}")
        frozen = self._frozen_until.get(node_id, 0) - self.now_ms
        if frozen > 0:  # its clock stands still: no tick until it runs again
            self.schedule(frozen, EV_TICK, node_id, incarnation)
            return
        node.tick()  # fed to the core by the node's driver, between Readies
        self.schedule(self._tick_ms[node_id], EV_TICK, node_id, incarnation)
        self.after_io(node)

    def _write_done(self, node_id: str, incarnation: object) -> None:
        node = self.nodes[node_id]
        if not node.alive or node.incarnation != incarnation or node.pending is None:
            return  # the node crashed before its write finished: the write is lost
        if self.nemesis.crash_in_write(node):
            return
        self.trace(f"{self.now_ms} w{node_id}")
        self.count("slow_leader_write")
        self.after_io(node, write_done=True)

    def _deliver(self, message: Message) -> None:
        if (
            self.network.clogged(message.from_, message.to)
            and message.type is not MessageType.SNAPSHOT  # its sender awaits a report
            and not self.quiet
        ):
            self.network.hold(message)  # BUGGIFY: held back until the link unclogs
            return
        sender = self.nodes.get(message.from_)
        receiver = self.nodes.get(message.to)
        lost = (
            receiver is None
            or not receiver.alive
            or not self.network.connected(message.from_, message.to)
        )
        kind = message.type
        self.trace(
            f"{self.now_ms} {kind.name} {message.from_}>{message.to} {message.term} "
            f"{message.index} {len(message.entries)} {message.commit} {lost}"
        )
        if lost or receiver is None or receiver.raft is None:
            if sender is not None and sender.raft is not None:
                if kind is MessageType.SNAPSHOT:
                    sender.raft.report_snapshot(message.to, False)
                sender.raft.report_unreachable(message.to)
                self.after_io(sender)
            return
        receiver.step(message)
        self._stepped = message
        self.after_io(receiver)
        self._stepped = None
        if kind is MessageType.SNAPSHOT:
            self.count("snapshot_delivered")
        if kind is MessageType.SNAPSHOT and sender is not None and sender.raft is not None:
            sender.raft.report_snapshot(message.to, True)
            self.after_io(sender)

    def check_logs(self) -> None:
        self.checker.check_logs(
            (node.id, node.storage) for node in self.nodes.values() if node.id not in self.retired
        )

    # -- phases -----------------------------------------------------------------------------

    def run(self) -> None:
        self.network.faults = LinkFaults(
            drop_rate=self.mix.drop_rate,
            duplicate_rate=self.mix.duplicate_rate,
            delay_ms_max=self.mix.delay_ms_max,
        )
        self.clients.begin()
        self.nemesis.begin()
        while self.steps < self.config.steps and self.step():
            pass
        self.heal_and_converge()
        self.judge()

    def heal_and_converge(self) -> None:
        self.quiet = True
        self.network.heal()
        for held in self.network.unclog():
            self.schedule(1, EV_DELIVER, held)
        self.network.faults = LinkFaults.calm()
        self.trace(f"{self.now_ms} heal")
        self.disk_faults = DiskFaults()  # fsync back to instant (a write already stalled ends)
        for node in list(self.nodes.values()):
            node.crash_stage = None
            node.disk.faults = self.disk_faults
            if not node.alive and node.id not in self.retired:
                self.start_node(node)
        self._await_liveness()

    def _await_liveness(self) -> None:
        """Bounded liveness after healing: a leader within `election_ticks`, a fresh entry of
        its committed within `commit_ticks`, and applied by every member (learners that
        must catch up through one-entry messages included) within `converge_ticks`."""
        config = self.config
        tick_ms = config.tick_ms + 1  # the slowest clock
        healed_ms = self.now_ms
        probe: tuple[SimNode, int, bytes] | None = None
        probes = 0
        phase = "elect a leader"
        moved = (0, healed_ms)  # the leader's replication mark, and when it last rose
        while True:
            leader = self.leader()
            if probe is not None:
                applied = self.checker.applied_data().get(probe[1])
                if applied is not None and applied[1] != probe[2]:
                    probe = None  # the probe lost its slot to another leader's entry
            if leader is not None and (probe is None or probe[0] is not leader):
                probes += 1
                probe = self._propose_probe(leader, probes)
            if probe is not None:
                phase = "commit" if probe[0].applied < probe[1] else "apply everywhere"
                if self._converged(*probe):
                    self.stats["liveness_ms"] = self.now_ms - healed_ms
                    self.final_term = probe[0].storage.initial_state()[0].term
                    return
            elif leader is not None:
                phase = "commit"
            # Without pre-vote, a candidate whose log is behind keeps resetting the timer of
            # the one node that could win (every higher-term vote request does): elections
            # then end by a lucky draw of timeouts, which takes a few more rounds.
            slack = 1 if self.raft_config.pre_vote else 3
            elect = config.election_ticks * slack
            bound = {
                "elect a leader": elect,
                "commit": elect + config.commit_ticks,
                "apply everywhere": elect + config.commit_ticks + config.converge_ticks,
            }[phase]
            over = self.now_ms - healed_ms > bound * tick_ms
            mark = _replication_mark(leader)
            if mark > moved[0]:
                moved = (mark, self.now_ms)
            if (
                over
                and phase == "commit"
                and self.now_ms - moved[1] <= config.commit_ticks * tick_ms
            ):
                # A voter the quorum needs is catching up (added empty as a voter, say; maybe
                # one entry per message): while its match moves, the wait goes on, up to the
                # bound a learner gets (seed 5028625 of the system model).
                bound += config.converge_ticks
                over = self.now_ms - healed_ms > bound * tick_ms
            if over or not self.step():
                raise LivenessViolationError(self._stall_report(phase, bound))

    def _propose_probe(self, leader: SimNode, seq: int) -> tuple[SimNode, int, bytes] | None:
        assert leader.raft is not None
        data = KvCommand(client=0, seq=seq, key="_probe", value=str(seq)).encode()
        try:
            index = leader.raft.propose(data)
        except ProposalDroppedError:
            return None
        self.after_io(leader)
        return leader, index, data

    def _converged(self, leader: SimNode, index: int, data: bytes) -> bool:
        """Every member of the leader's configuration is up and has applied the probe."""
        if not leader.alive or leader.role is not StateRole.LEADER:
            return False
        for node_id in leader.conf_state.voters | leader.conf_state.learners:
            node = self.nodes.get(node_id)
            if node is None or not node.alive or node.applied < index:
                return False
        applied = self.checker.applied_data().get(index)
        return applied is not None and applied[1] == data

    def _stall_report(self, phase: str, bound: int) -> str:
        lines = [f"liveness: did not {phase} within {bound} ticks of healing"]
        for node in self.nodes.values():
            if node.raft is None:
                lines.append(f"  {node.id}: down{' (retired)' if node.id in self.retired else ''}")
                continue
            status = node.raft.status
            lines.append(
                f"  {node.id}: {status.role.name} term {status.term} leader {status.leader_id} "
                f"commit {status.commit} applied {node.applied} last {status.last_index} "
                f"voters {sorted(status.conf_state.voters)} "
                f"learners {sorted(status.conf_state.learners)}"
            )
        return "\n".join(lines)

    def judge(self) -> None:
        for node in self.nodes.values():
            for name, n in sorted(node.disk.stats.items()):
                self.stats[name] = self.stats.get(name, 0) + n
        self.check_logs()
        members = [n for n in self.nodes.values() if n.alive and n.id not in self.retired]
        top = max(n.applied for n in members)
        states = {n.id: n.model.digest() for n in members if n.applied == top}
        first = next(iter(states.values()))
        for node_id, data in states.items():
            if data != first:
                raise InvariantViolationError(
                    f"state machines differ at {top}: {node_id} {data.hex()} vs {first.hex()}"
                )
        self.clients.judge_acknowledged()
        self.clients.resolve_open_writes(self.final_term)
        result = check_history(self.history.operations())
        self.stats["ops"] = len(self.history.operations())
        if result.verdict is Verdict.NOT_LINEARIZABLE:
            raise InvariantViolationError(f"linearizability: {result.explanation}")
        if result.verdict is Verdict.UNKNOWN:
            self.count("linearizability_unknown")

    def digest(self) -> str:
        return self._digest.hexdigest()


def _replication_mark(leader: SimNode | None) -> int:
    """The sum of the match indexes of ``leader``'s voters: it rises while any of them moves."""
    raft = None if leader is None else leader.raft
    if raft is None:
        return 0
    status = raft.status
    return sum(p.match for i, p in status.progress.items() if i in status.conf_state.voters)


def run_seed(config: SimConfig) -> SimResult:
    """Run one seed; every failure becomes a result that names the seed, never an exception."""
    sim = Simulation(config)
    try:
        sim.run()
    except (InvariantViolationError, LivenessViolationError) as exc:
        return SimResult(
            config=config,
            ok=False,
            digest=sim.digest(),
            steps=sim.steps,
            failure=f"{type(exc).__name__}: {exc}",
            stats=sim.stats,
        )
    except Exception as exc:  # a crash of the core under test is a finding too
        import traceback

        tb = "".join(traceback.format_exception(exc))
        return SimResult(
            config=config,
            ok=False,
            digest=sim.digest(),
            steps=sim.steps,
            failure=f"exception at {sim.now_ms} ms:\n{tb}",
            stats=sim.stats,
        )
    return SimResult(config=config, ok=True, digest=sim.digest(), steps=sim.steps, stats=sim.stats)
