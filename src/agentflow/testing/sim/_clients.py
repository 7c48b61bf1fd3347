"""Simulated clients of the key-value store, and the history of what they saw.

Each client has at most one operation outstanding. Writes (put, compare-and-set) are
proposed through the driver of the node the client believes leads, as the master proposes;
the client is answered when that node's driver resolves it: its entry applied with the term it
was proposed in — with the outcome computed there — or another entry took its index (the write
then certainly did not happen), or the node does not lead. Reads go through
ReadIndex and are answered once the node has applied the read index (or, in the deliberately
broken modes, straight from some node's local state). A client that hears nothing for
`client_timeout_ms` gives up: its operation stays in the history as "maybe happened".
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentflow.errors import UnavailableError
from agentflow.raft import ProposalDroppedError, StateRole
from agentflow.testing.linearizability import OpKind
from agentflow.testing.sim._config import ReadMode
from agentflow.testing.sim._events import EV_CLIENT, EV_CLIENT_TIMEOUT
from agentflow.testing.sim._invariants import InvariantViolationError
from agentflow.testing.sim._kv import KvCommand

if TYPE_CHECKING:
    from agentflow.testing.sim._shell import Applied, SimNode
    from agentflow.testing.sim._simulation import Simulation

__all__ = ["ClientDriver"]


SUPERSEDED = "superseded by a snapshot"  # how cluster.proposals says a snapshot covered it


class _Answer:
    """The waiter of one write in its node's driver (a Waiter, and told where it was put)."""

    def __init__(self, clients: ClientDriver, pending: _Pending, node: SimNode) -> None:
        self._clients = clients
        self._pending = pending
        self._node = node
        self._done = False

    def done(self) -> bool:
        return self._done

    def placed(self, index: int, term: int) -> None:
        self._pending.index, self._pending.term = index, term

    def set_result(self, result: object, /) -> None:
        self._done = True
        self._clients.answered(self._pending, result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        self._done = True
        self._clients.answered(self._pending, exception, self._node)


@dataclass(slots=True, kw_only=True)
class _Pending:
    client: int
    op_id: int
    kind: OpKind
    key: str
    node_id: str
    incarnation: int
    data: bytes = b""
    index: int = 0
    term: int = 0
    context: bytes = b""


class ClientDriver:
    def __init__(self, sim: Simulation) -> None:
        self._sim = sim
        self._rng = sim.rng
        self._busy: dict[int, _Pending] = {}
        self._seq = [0] * (sim.config.clients + 1)
        self._reads: dict[bytes, _Pending] = {}
        self._open_writes: list[_Pending] = []
        self._acknowledged: list[tuple[int, bytes]] = []
        self._recent: dict[str, str | None] = {}
        self._sticky: dict[int, str] = {}
        self._pinned_until: dict[int, int] = {}
        # BUGGIFY: clients whose next operation is a read (of this key, or any).
        self._read_next: dict[int, str | None] = {}
        # BUGGIFY: (an isolated leader, the one client writing elsewhere, until when): once
        # that client's write is acknowledged, the others read its key at the old leader.
        self._stale_watch: tuple[str, int, int] | None = None

    def begin(self) -> None:
        for client in range(1, self._sim.config.clients + 1):
            self._sim.schedule(self._rng.randint(50, 150), EV_CLIENT, client)

    # -- issuing --------------------------------------------------------------------------

    def act(self, client: int) -> None:
        sim = self._sim
        if sim.quiet or client in self._busy:
            return
        self._seq[client] += 1
        key = self._rng.choice(sim.config.keys)
        if client in self._read_next:
            self._read(client, self._read_next.pop(client) or key)
            return
        if self._stale_watch is not None and self._stale_watch[1] == client:
            self._write(client, key, is_cas=False)  # the watched writer writes
            return
        roll = self._rng.random()
        if roll < 0.45:
            self._write(client, key, is_cas=False)
        elif roll < 0.85:
            self._read(client, key)
        else:
            self._write(client, key, is_cas=True)

    def _target(self, client: int, leader_bias: float) -> SimNode | None:
        """The node this client talks to: the one it used last while that keeps working
        (so a client can be stuck with a deposed leader, as real ones are), else a fresh
        pick — usually the current leader, sometimes any node."""
        sim = self._sim
        sticky = sim.nodes.get(self._sticky.get(client, ""))
        if sticky is not None and sticky.alive:
            return sticky
        leader = sim.leader()
        if leader is not None and self._rng.random() < leader_bias:
            node: SimNode | None = leader
        else:
            alive = [node for node in sim.nodes.values() if node.alive]
            node = self._rng.choice(alive) if alive else None
        if node is not None:
            self._sticky[client] = node.id
        return node

    def stick(self, client: int, node_id: str, *, until_ms: int = 0) -> None:
        """From its next operation, ``client`` talks to ``node_id`` (BUGGIFY: a client left
        talking to a leader that is about to be deposed), and keeps to it until ``until_ms``
        even when an operation there times out (as a client retrying its endpoint does)."""
        self._sticky[client] = node_id
        self._pinned_until[client] = until_ms

    def read_at_once(self, node_id: str) -> None:
        """BUGGIFY: every client gives up what it waits for and reads at ``node_id`` now
        (a new leader, before it has committed anything of its term)."""
        for client in range(1, self._sim.config.clients + 1):
            self._read_now(client, node_id, None)

    def _read_now(self, client: int, node_id: str, key: str | None) -> None:
        pending = self._busy.get(client)
        if pending is not None:
            self.time_out(client, pending.op_id)
        self._sticky[client] = node_id
        self._read_next[client] = key
        self._sim.schedule(0, EV_CLIENT, client)

    def watch_stale(self, node_id: str, writer: int, until_ms: int) -> None:
        """BUGGIFY: when ``writer``'s next write is acknowledged before ``until_ms``, every
        other client reads that key at ``node_id`` (a leader cut off from the one that
        acknowledged it) at once: a read it must not answer from its own state."""
        self._stale_watch = (node_id, writer, until_ms)
        pending, target = self._busy.get(writer), self._sticky.get(writer)
        if pending is not None:
            self.time_out(writer, pending.op_id)
        if target is not None:
            self._sticky[writer] = target

    def _after_write(self, client: int, key: str) -> None:
        watch = self._stale_watch
        if watch is None or watch[1] != client or watch[2] < self._sim.now_ms:
            return
        self._stale_watch = None
        self._sim.trace(f"{self._sim.now_ms} clients read {key} at old leader {watch[0]}")
        for other in range(1, self._sim.config.clients + 1):
            if other != client:
                self._read_now(other, watch[0], key)

    def _redirect(self, client: int, node: SimNode | None) -> None:
        """After a refusal or a silence: follow the node's leader hint, or start afresh."""
        if self._pinned_until.get(client, 0) > self._sim.now_ms:
            return
        hint = node.leader_id if node is not None and node.alive else None
        if hint is not None and hint != self._sticky.get(client):
            self._sticky[client] = hint
        else:
            self._sticky.pop(client, None)

    def _write(self, client: int, key: str, *, is_cas: bool) -> None:
        sim = self._sim
        seq = self._seq[client]
        value = f"{client}.{seq}"
        expected = self._recent.get(key) if self._rng.random() < 0.8 else f"{client}.0"
        command = KvCommand(
            client=client, seq=seq, key=key, value=value, expected=expected, is_cas=is_cas
        )
        kind = OpKind.CAS if is_cas else OpKind.PUT
        op_id = sim.history.invoke(
            client=client,
            kind=kind,
            key=key,
            value=value,
            expected=expected if is_cas else None,
            now_ms=sim.now_ms,
        )
        node = self._target(client, 0.85)
        if node is None or node.driver is None:
            sim.history.fail(op_id)
            self._next(client)
            return
        pending = _Pending(
            client=client,
            op_id=op_id,
            kind=kind,
            key=key,
            node_id=node.id,
            incarnation=node.incarnation,
            data=command.encode(),
        )
        self._wait(pending)
        sim.trace(f"{sim.now_ms} c{client} {kind.value} {key} @{node.id}")
        # As the master does: queued in the node's driver, proposed between Readies, answered
        # when its entry applies with the term it was proposed in (cluster.proposals).
        answer = _Answer(self, pending, node)
        node.driver.propose(pending.data, answer, answer)
        sim.after_io(node)

    def _read(self, client: int, key: str) -> None:
        sim = self._sim
        op_id = sim.history.invoke(client=client, kind=OpKind.GET, key=key, now_ms=sim.now_ms)
        mode = sim.config.read_mode
        if mode is not ReadMode.READ_INDEX:
            self._read_locally(client, op_id, key, mode)
            return
        node = self._target(client, 0.7)
        if node is None or node.raft is None:
            sim.history.fail(op_id)
            self._next(client)
            return
        context = f"r{op_id}".encode()
        pending = _Pending(
            client=client,
            op_id=op_id,
            kind=OpKind.GET,
            key=key,
            node_id=node.id,
            incarnation=node.incarnation,
            context=context,
        )
        self._wait(pending)
        self._reads[context] = pending
        sim.trace(f"{sim.now_ms} c{client} get {key} @{node.id}")
        with contextlib.suppress(ProposalDroppedError):  # no answer: the client times out
            node.raft.read_index(context)
        sim.after_io(node)

    def _read_locally(self, client: int, op_id: int, key: str, mode: ReadMode) -> None:
        """The broken read paths: no ReadIndex, so nothing proves the state is current."""
        sim = self._sim
        if mode is ReadMode.LEADER_LOCAL:
            nodes = [n for n in sim.nodes.values() if n.alive and n.role is StateRole.LEADER]
        else:
            nodes = [n for n in sim.nodes.values() if n.alive]
        if not nodes:
            sim.history.fail(op_id)
        else:
            node = self._rng.choice(nodes)
            sim.history.complete(op_id, result=node.kv.get(key), now_ms=sim.now_ms)
        self._next(client)

    def _wait(self, pending: _Pending) -> None:
        self._busy[pending.client] = pending
        self._sim.schedule(
            self._sim.config.client_timeout_ms, EV_CLIENT_TIMEOUT, pending.client, pending.op_id
        )

    def _next(self, client: int) -> None:
        self._busy.pop(client, None)
        self._sim.schedule(self._rng.randint(1, 30), EV_CLIENT, client)

    # -- answers ----------------------------------------------------------------------------

    def answered(self, pending: _Pending, result: object, node: SimNode | None) -> None:
        """The node's driver resolved the write: applied at its term, or not (see _Answer)."""
        sim = self._sim
        if self._busy.get(pending.client) is not pending:
            return  # the client gave up on it already
        if node is not None:  # refused: the node does not lead
            sim.history.fail(pending.op_id)
            self._redirect(pending.client, node)
        elif isinstance(result, UnavailableError):
            if SUPERSEDED in str(result):
                return  # it may be inside the snapshot: the client times out, "maybe"
            sim.history.fail(pending.op_id)  # another leader's entry took its index
        else:
            outcome = bool(result) if pending.kind is OpKind.CAS else None
            sim.history.complete(pending.op_id, result=outcome, now_ms=sim.now_ms)
            self._acknowledged.append((pending.index, pending.data))
            command = KvCommand.decode(pending.data)
            if pending.kind is OpKind.PUT or outcome:
                self._recent[command.key] = command.value
            self._after_write(pending.client, command.key)
        self._next(pending.client)

    def on_applied(self, node: SimNode, applied: list[Applied]) -> None:
        """Nothing to do: each write is answered by its node's driver (see `answered`)."""

    def on_reads(self, node: SimNode, contexts: list[bytes]) -> None:
        sim = self._sim
        for context in contexts:
            pending = self._reads.pop(context, None)
            if pending is None or pending.incarnation != node.incarnation:
                continue
            assert pending.node_id == node.id, (pending, node.id)
            value = node.kv.get(pending.key)
            sim.history.complete(pending.op_id, result=value, now_ms=sim.now_ms)
            self._recent[pending.key] = value
            self._next(pending.client)

    def time_out(self, client: int, op_id: object) -> None:
        pending = self._busy.get(client)
        if pending is None or pending.op_id != op_id:
            return
        self._reads.pop(pending.context, None)
        self._redirect(client, self._sim.nodes.get(pending.node_id))
        if pending.kind is not OpKind.GET:
            self._open_writes.append(pending)
        self._next(client)

    def forget_node(self, node_id: str) -> None:
        """The node crashed: its connections, and so its answers, are gone."""
        for context in [c for c, p in self._reads.items() if p.node_id == node_id]:
            del self._reads[context]

    # -- judging --------------------------------------------------------------------------

    def judge_acknowledged(self) -> None:
        """Every write acknowledged to a client is in the log where it was acknowledged."""
        applied = self._sim.checker.applied_data()
        for index, data in self._acknowledged:
            seen = applied.get(index)
            if seen is None or seen[1] != data:
                raise InvariantViolationError(f"acknowledged write {data!r} at {index} was lost")

    def resolve_open_writes(self, final_term: int) -> None:
        """Writes nobody answered: those that can no longer commit certainly did not happen.

        After healing, the leader of `final_term` committed an entry of its own term. A write
        proposed in an earlier term that is not in the committed log by then never will be:
        every later leader's log extends this one.
        """
        committed = {data for _, data in self._sim.checker.applied_data().values()}
        still_open = list(self._busy.values())
        for pending in [*self._open_writes, *still_open]:
            if pending.kind is OpKind.GET:
                continue
            if pending.data not in committed and pending.term < final_term:
                self._sim.history.fail(pending.op_id)
        self._open_writes.clear()
        self._busy.clear()
