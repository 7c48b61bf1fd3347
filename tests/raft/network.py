"""An in-memory network of RaftNodes for tests: synchronous, deterministic, lossy on demand.

Each node has a MemoryStorage and a tiny state machine (the list of applied payloads). Every
Ready is handled as the contract says: persist snapshot, entries and hard state; send the
messages; apply committed entries (conf changes through ``apply_conf_change``); serve reads;
advance. Messages wait in one FIFO queue until ``deliver``/``stabilize`` hands them over, so a
test can look at (or drop) what is in flight.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable
from random import Random

from agentflow.raft import (
    ConfChange,
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RaftNode,
    ReadState,
    Ready,
    Snapshot,
    bootstrap,
)

MessageFilter = Callable[[Message], bool]


def render_entry(entry: Entry) -> str:
    text = f"{entry.term}/{entry.index}"
    if entry.type is EntryType.CONF_CHANGE:
        cc = ConfChange.decode(entry.data)
        return f"{text}:conf({cc.type.value} {cc.node_id})"
    if entry.data:
        return f"{text}:{entry.data.decode()}"
    return text


def _ids(ids: Iterable[str]) -> str:
    return "(" + ",".join(sorted(ids)) + ")"


def render_message(m: Message) -> str:
    head = f"{m.from_}->{m.to} {m.type.value} t={m.term}"
    t = m.type
    if t is MessageType.APPEND:
        ents = ", ".join(render_entry(e) for e in m.entries)
        return f"{head} prev={m.log_term}/{m.index} commit={m.commit} [{ents}]"
    if t is MessageType.APPEND_RESP:
        if m.reject:
            return f"{head} reject index={m.index} hint={m.log_term}/{m.reject_hint}"
        return f"{head} index={m.index}"
    if t in (MessageType.VOTE, MessageType.PRE_VOTE):
        forced = " transfer" if m.context else ""
        return f"{head} last={m.log_term}/{m.index}{forced}"
    if t in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        return f"{head} {'reject' if m.reject else 'grant'}"
    if t is MessageType.HEARTBEAT:
        ctx = f" ctx={m.context.decode()}" if m.context else ""
        return f"{head} commit={m.commit}{ctx}"
    if t is MessageType.SNAPSHOT and m.snapshot is not None:
        meta = m.snapshot.metadata
        return f"{head} snap={meta.term}/{meta.index} voters={_ids(meta.conf_state.voters)}"
    if t is MessageType.READ_INDEX_RESP:
        return f"{head} index={m.index} ctx={m.context.decode()}"
    if m.context:
        return f"{head} ctx={m.context.decode()}"
    return head


def encode_state(items: list[tuple[int, bytes]]) -> bytes:
    return json.dumps([[index, data.hex()] for index, data in items]).encode()


def decode_state(raw: bytes) -> list[tuple[int, bytes]]:
    if not raw:
        return []
    return [(index, bytes.fromhex(data)) for index, data in json.loads(raw)]


class Network:
    """Nodes, their storages and state machines, and the messages in flight between them."""

    def __init__(self, *, trace: list[str] | None = None) -> None:
        self.nodes: dict[str, RaftNode] = {}
        self.storages: dict[str, MemoryStorage] = {}
        self.configs: dict[str, Config] = {}
        self.applied: dict[str, list[tuple[int, bytes]]] = {}  # normal entries with data
        self.read_states: dict[str, list[ReadState]] = {}
        self.queue: deque[Message] = deque()
        self.blocked: set[tuple[str, str]] = set()
        self.down: set[str] = set()
        self.drop_filter: MessageFilter | None = None
        self.delivered: list[Message] = []
        self.trace = trace  # when set, events and messages are rendered into it

    # -- membership of the test network -----------------------------------------------------------

    def add_node(
        self,
        node_id: str,
        *,
        voters: Iterable[str] = (),
        learners: Iterable[str] = (),
        conf_in_log: bool = False,
        seed: int | None = None,
        **settings: object,
    ) -> RaftNode:
        """Start a node; how it learns the membership is the test's choice.

        - ``conf_in_log=True``: a founding member as a real cluster starts one, its storage
          bootstrapped with ``voters`` (committed conf-change entries 1..n, applied by the
          first Ready, handled here so that the node may campaign at once).
        - ``voters``/``learners`` alone: the ConfState beside the log (MemoryStorage's
          ``conf_state``, as etcd's paper tests use ``withPeers``): the log starts empty, so a
          test's indexes are the paper's. Only safe when no node joins from an empty storage.
        - neither: a node that joins later, from an empty storage.
        """
        voter_ids = frozenset(voters)
        learner_ids = frozenset(learners)
        if conf_in_log:
            assert not learner_ids, "bootstrap founds a cluster of voters only"
            storage = MemoryStorage()
            bootstrap(storage, voter_ids)
        else:
            storage = MemoryStorage(conf_state=ConfState(voters=voter_ids, learners=learner_ids))
        config = Config(id=node_id, **settings)  # type: ignore[arg-type]
        self.storages[node_id] = storage
        self.configs[node_id] = config
        self.applied[node_id] = []
        self.read_states[node_id] = []
        rng = Random(seed if seed is not None else int.from_bytes(node_id.encode(), "big"))
        self.nodes[node_id] = RaftNode(config, storage, rng)
        self.process_ready(node_id)
        return self.nodes[node_id]

    def restart(self, node_id: str, *, seed: int = 99) -> RaftNode:
        """Crash and restart: keep storage, lose everything else (unpersisted state too)."""
        self.queue = deque(m for m in self.queue if m.to != node_id)
        storage = self.storages[node_id]
        snap = storage.snapshot()
        self.applied[node_id] = decode_state(snap.data)
        config = Config(**{**_config_fields(self.configs[node_id]), "applied": 0})
        self.nodes[node_id] = RaftNode(config, storage, Random(seed))
        self.down.discard(node_id)
        return self.nodes[node_id]

    # -- faults ------------------------------------------------------------

    def cut(self, a: str, b: str) -> None:
        self.blocked.update({(a, b), (b, a)})

    def isolate(self, node_id: str) -> None:
        for other in self.nodes:
            if other != node_id:
                self.cut(node_id, other)

    def partition(self, *groups: Iterable[str]) -> None:
        sets = [set(g) for g in groups]
        for i, group in enumerate(sets):
            for other in sets[i + 1 :]:
                for a in group:
                    for b in other:
                        self.cut(a, b)

    def heal(self) -> None:
        self.blocked.clear()

    # -- driving ------------------------------------------------------------

    def tick(self, node_id: str, times: int = 1) -> None:
        for _ in range(times):
            self.nodes[node_id].tick()
            self.process_ready(node_id)

    def process_ready(self, node_id: str) -> bool:
        node = self.nodes[node_id]
        if node_id in self.down or not node.has_ready():
            return False
        self.finish_ready(node_id, self.begin_ready(node_id))
        return True

    def begin_ready(self, node_id: str) -> Ready:
        """Take a Ready and send its early messages, as a shell does before persisting it
        (thesis §10.2.1); a test may then deliver them, and step replies, while the write is
        still running, before :meth:`finish_ready`."""
        rd = self.nodes[node_id].ready()
        self.queue.extend(rd.early_messages)
        return rd

    def finish_ready(self, node_id: str, rd: Ready) -> None:
        """The rest of the contract: persist, send the other messages, apply, advance."""
        self._persist(node_id, rd)
        self.queue.extend(rd.messages)
        self._apply(node_id, rd)
        self.nodes[node_id].advance(rd)

    def process_all(self) -> None:
        busy = True
        while busy:
            busy = False
            for node_id in sorted(self.nodes):
                busy = self.process_ready(node_id) or busy

    def deliver_round(self) -> int:
        """Deliver every message queued now (not those they cause); returns how many."""
        batch, self.queue = list(self.queue), deque()
        for m in batch:
            self.deliver(m)
        return len(batch)

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Handle readies and deliver messages until nothing moves."""
        for _ in range(max_rounds):
            self.process_all()
            if not self.queue:
                return
            self.deliver_round()
        raise AssertionError("network did not settle")

    def deliver(self, m: Message) -> None:
        dropped = (
            (m.from_, m.to) in self.blocked
            or m.to in self.down
            or m.to not in self.nodes
            or (self.drop_filter is not None and self.drop_filter(m))
        )
        if self.trace is not None:
            self._emit(render_message(m) + (" DROPPED" if dropped else ""))
        if m.type is MessageType.SNAPSHOT and m.from_ in self.nodes:
            sender = self.nodes[m.from_]
            if not dropped:
                self.nodes[m.to].step(m)
            sender.report_snapshot(m.to, not dropped)
            return
        if dropped:
            return
        self.delivered.append(m)
        self.nodes[m.to].step(m)

    # -- the shell's duties ------------------------------------------------------------

    def _persist(self, node_id: str, rd: Ready) -> None:
        storage = self.storages[node_id]
        if rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
            self.applied[node_id] = decode_state(rd.snapshot.data)
            self._emit(f"{node_id}: restore snapshot {_render_snapshot(rd.snapshot)}")
        storage.append(rd.entries)
        if rd.hard_state is not None:
            storage.set_hard_state(rd.hard_state)
        if rd.soft_state is not None:
            lead = rd.soft_state.leader_id or "none"
            term = self.nodes[node_id].term
            self._emit(f"{node_id}: {rd.soft_state.role.value} term={term} lead={lead}")

    def _apply(self, node_id: str, rd: Ready) -> None:
        node = self.nodes[node_id]
        if rd.committed_entries:
            text = ", ".join(render_entry(e) for e in rd.committed_entries)
            self._emit(f"{node_id}: apply {text}")
        for entry in rd.committed_entries:
            if entry.type is EntryType.CONF_CHANGE:
                conf = node.apply_conf_change(ConfChange.decode(entry.data))
                self.storages[node_id].set_conf_state(conf)
            elif entry.data:
                self.applied[node_id].append((entry.index, entry.data))
        for rs in rd.read_states:
            self._emit(f"{node_id}: read-state index={rs.index} ctx={rs.context.decode()}")
        self.read_states[node_id].extend(rd.read_states)

    def compact(self, node_id: str, index: int) -> None:
        """Snapshot the state machine at ``index`` (applied) and drop the log up to it."""
        node = self.nodes[node_id]
        storage = self.storages[node_id]
        data = encode_state([item for item in self.applied[node_id] if item[0] <= index])
        storage.create_snapshot(index, node.status.conf_state, data)
        storage.compact(index)

    def _emit(self, line: str) -> None:
        if self.trace is not None:
            self.trace.append(line)

    # -- queries ------------------------------------------------------------

    def leader(self) -> str | None:
        leaders = [i for i, n in self.nodes.items() if n.status.role.value == "LEADER"]
        return max(leaders, key=lambda i: self.nodes[i].term) if leaders else None

    def values(self, node_id: str) -> list[bytes]:
        return [data for _, data in self.applied[node_id]]


def _render_snapshot(snap: Snapshot) -> str:
    meta = snap.metadata
    return f"{meta.term}/{meta.index} voters={_ids(meta.conf_state.voters)}"


def _config_fields(config: Config) -> dict[str, object]:
    return {name: getattr(config, name) for name in Config.__dataclass_fields__}


def msg(msg_type: MessageType, from_: str, to: str, term: int, **fields: object) -> Message:
    return Message(type=msg_type, from_=from_, to=to, term=term, **fields)  # type: ignore[arg-type]


def sent(net: Network) -> list[Message]:
    """Handle every pending Ready and return (removing them) the messages now in flight."""
    net.process_all()
    out, net.queue = list(net.queue), deque()
    return out


def peek(net: Network) -> list[Message]:
    """Handle every pending Ready and return the messages in flight, leaving them queued."""
    net.process_all()
    return list(net.queue)


def cluster(
    size: int, *, trace: list[str] | None = None, conf_in_log: bool = False, **settings: object
) -> Network:
    """A network of ``size`` voters named "1".."size"; nobody leads yet. By default the
    membership sits beside an empty log (see :meth:`Network.add_node`); ``conf_in_log``
    bootstraps it into the log, as a real cluster does."""
    net = Network(trace=trace)
    ids = [str(i) for i in range(1, size + 1)]
    for node_id in ids:
        net.add_node(node_id, voters=ids, conf_in_log=conf_in_log, **settings)
    return net


def elect(net: Network, node_id: str) -> None:
    net.nodes[node_id].campaign()
    net.stabilize()
    assert net.nodes[node_id].status.role.value == "LEADER"
