"""A hypothesis state machine over the message table: order, cursors, bounds, acks, snapshots."""

from __future__ import annotations

import msgpack
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from agentflow.errors import AgentFlowError, OverloadedError
from agentflow.state.messages import Message, MessageLimits, MessageTable

AGENTS = ["a", "b", "c"]
TARGETS = [*AGENTS, "*", "topic:t.x", "topic:u"]
LIMITS = MessageLimits(inbox_max=4, history_max=6, inbox_bytes_max=100, history_bytes_max=150)


class MessageTableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table = MessageTable(LIMITS)
        self.index = 0
        self.now_ms = 0
        self.live: set[str] = set()
        self.handed: dict[str, int] = {}  # agent -> highest cursor ever delivered
        self.acked: dict[str, int] = {a: 0 for a in AGENTS}

    @rule(agent=st.sampled_from(AGENTS), ttl=st.integers(1, 50))
    def connect(self, agent: str, ttl: int) -> None:
        self.table.connect(agent, ttl_ms=ttl, now_ms=self.now_ms)

    @rule(agent=st.sampled_from(AGENTS), pattern=st.sampled_from(["t.*", "u", "Note"]))
    def subscribe(self, agent: str, pattern: str) -> None:
        self.table.subscribe(agent, pattern, now_ms=self.now_ms)

    @rule(
        sender=st.sampled_from(AGENTS),
        to=st.sampled_from(TARGETS),
        kind=st.sampled_from(["Note", "Other"]),
        ttl=st.none() | st.integers(1, 30),
        size=st.integers(0, 60),
    )
    def send(self, sender: str, to: str, kind: str, ttl: int | None, size: int) -> None:
        self.index += 1
        message = Message(
            id=f"m{self.index}",
            index=self.index,
            sender=sender,
            to=to,
            type=kind,
            content=self.index,
            timestamp_ms=self.now_ms,
            ttl_ms=ttl,
            size=size,
        )

        def is_live(agent: str) -> bool:
            box = self.table.agents.get(agent)
            return box is not None and box.session_until_ms > self.now_ms

        def room(agent: str) -> bool:
            box = self.table.agents.get(agent)
            if box is None:
                return size <= LIMITS.inbox_bytes_max
            used = sum(m.size for _, m in box.inbox)
            return len(box.inbox) < LIMITS.inbox_max and used + size <= LIMITS.inbox_bytes_max

        before = {a: room(a) for a in AGENTS}
        try:
            sent = self.table.send(message, is_live=is_live)
        except OverloadedError:
            assert to in AGENTS and not before[to]
            return
        for agent in sent.message.recipients:
            assert before[agent]
        for agent in sent.message.undelivered:
            assert not before[agent]
        if to == "*":
            assert sender not in sent.message.recipients
            assert all(is_live(a) for a in sent.message.recipients)

    @rule(dt=st.integers(0, 20))
    def tick(self, dt: int) -> None:
        self.now_ms += dt

    @rule(agent=st.sampled_from(AGENTS), data=st.data())
    def ack(self, agent: str, data: st.DataObject) -> None:
        box = self.table.agents.get(agent)
        if box is None:
            return
        cursor = data.draw(st.integers(0, box.next_cursor + 1))
        try:
            self.table.ack(agent, cursor, now_ms=self.now_ms)
        except AgentFlowError:
            assert cursor >= box.next_cursor
            return
        self.acked[agent] = max(self.acked[agent], cursor)

    @invariant()
    def inboxes_are_ordered_bounded_and_past_the_ack(self) -> None:
        for agent, box in self.table.agents.items():
            cursors = [c for c, _ in box.inbox]
            assert cursors == sorted(set(cursors))
            assert all(c > box.acked for c in cursors)
            assert len(box.inbox) <= LIMITS.inbox_max
            assert box.inbox_bytes == sum(m.size for _, m in box.inbox) <= LIMITS.inbox_bytes_max
            indexes = [m.index for _, m in box.inbox]
            assert indexes == sorted(indexes), "per-pair order broken"
            assert box.acked == self.acked[agent]
            read = self.table.read(agent, after=None, now_ms=self.now_ms)
            assert all(not m.expired(self.now_ms) for _, m in read)
        total = sum(b.inbox_bytes for b in self.table.agents.values())
        assert self.table.inbox_bytes_total == total

    @invariant()
    def history_is_bounded_newest_kept(self) -> None:
        indexes = [m.index for m in self.table.history]
        assert len(indexes) <= LIMITS.history_max
        assert self.table.history_bytes == sum(m.size for m in self.table.history)
        assert self.table.history_bytes <= LIMITS.history_bytes_max or len(indexes) == 1
        assert indexes == sorted(indexes)
        assert set(self.table.by_id) == {m.id for m in self.table.history}

    @invariant()
    def snapshot_round_trips(self) -> None:
        copy = MessageTable(LIMITS)
        packed = msgpack.packb(self.table.snapshot(), use_bin_type=True)
        copy.restore(msgpack.unpackb(packed, raw=False, strict_map_key=False))
        assert copy.snapshot() == self.table.snapshot()


MessageTableMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
test_message_table_stateful = MessageTableMachine.TestCase
