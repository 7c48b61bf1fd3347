"""Agent messaging: a pure table of agents, inboxes, subscriptions, pending requests, history.

Every send is one command in the log, so a message acknowledged to its sender survives any
master failure. Addressing (``to``): an agent id (its inbox, created if it has none yet), ``*``
(every live agent but the sender) or ``topic:<name>`` (every agent with a subscription pattern
matching the topic name or the message type, live or not: a subscription is durable).

Each agent's inbox is an ordered list of ``(cursor, message)``; cursors rise by one per
delivery. A reader asks for what follows a cursor and acknowledges up to a cursor; what is not
acknowledged is delivered again (at-least-once). Messages past their ``ttl_ms`` are never
delivered. Inboxes and history are bounded, each inbox and all inboxes together: a full inbox
(or all inboxes holding their total) refuses a point-to-point send (429) and is reported as
``undelivered`` for a broadcast or topic, never dropped silently.

A message with ``requires_response`` opens a pending request (correlation id = its id unless
given) that the first message carrying that correlation id answers, if it comes before the
request's deadline; an answer goes to the waiting requester, not to an inbox. A reply after the
deadline is kept in history, marked ``late``, and delivered nowhere.

Nothing here reads a clock or does I/O: time is ``now_ms``, order is the log ``index``.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from agentflow.errors import (
    NoResponderError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    ValidationError,
)

__all__ = [
    "BROADCAST",
    "TOPIC_PREFIX",
    "AgentBox",
    "Message",
    "MessageLimits",
    "MessageTable",
    "Sent",
]

BROADCAST = "*"
LATE_REPLY_WINDOW_MS = 600_000  # a pending request is remembered this long past its deadline
TOPIC_PREFIX = "topic:"


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageLimits:
    """Bounds on messaging. Part of the cluster's configuration."""

    max_message_bytes: int = 256 * 1024
    inbox_max: int = 10_000  # per agent
    inbox_bytes_max: int = 16 << 20  # per agent, message contents
    inbox_total_bytes_max: int = 512 << 20  # all inboxes together, message contents
    history_max: int = 10_000
    history_bytes_max: int = 64 << 20  # message contents kept in history
    agents_max: int = 100_000
    pending_max: int = 100_000  # requests awaiting their reply
    answers_max: int = 10_000  # replies kept for requesters that retry
    subscriptions_max: int = 100  # per agent


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    id: str
    index: int  # the log index of the send: one order for every message
    sender: str
    to: str
    type: str
    content: Any
    timestamp_ms: int
    correlation_id: str | None = None
    requires_response: bool = False
    ttl_ms: int | None = None
    size: int = 0
    recipients: tuple[str, ...] = ()
    undelivered: tuple[str, ...] = ()  # inboxes that were full
    late: bool = False  # a reply that came after its request's deadline

    def expired(self, now_ms: int) -> bool:
        return self.ttl_ms is not None and now_ms >= self.timestamp_ms + self.ttl_ms

    def to_wire(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Message:
        data = dict(data)
        data["recipients"] = tuple(data["recipients"])
        data["undelivered"] = tuple(data["undelivered"])
        return cls(**data)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    message: Message
    duplicate: bool = False  # the id was sent before: nothing was delivered again


@dataclass(slots=True, kw_only=True)
class AgentBox:
    id: str
    created_ms: int
    subscriptions: list[str] = field(default_factory=list)
    inbox: deque[tuple[int, Message]] = field(default_factory=deque)
    next_cursor: int = 1
    acked: int = 0
    session_until_ms: int = 0  # a named session is live until then (renewed by connect)
    received: int = 0
    inbox_bytes: int = 0  # derived: the contents' sizes in ``inbox``

    def has_room(self, message: Message, limits: MessageLimits) -> bool:
        return (
            len(self.inbox) < limits.inbox_max
            and self.inbox_bytes + message.size <= limits.inbox_bytes_max
        )

    def drop_head(self) -> int:
        """Remove the oldest message; returns its size."""
        _, message = self.inbox.popleft()
        self.inbox_bytes -= message.size
        return message.size

    def matches(self, topic: str, type_: str) -> bool:
        return any(
            fnmatch.fnmatchcase(topic, p) or fnmatch.fnmatchcase(type_, p)
            for p in self.subscriptions
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pending:
    requester: str
    deadline_ms: int


class MessageTable:
    """Agents, their inboxes and subscriptions, and the message history."""

    def __init__(self, limits: MessageLimits | None = None) -> None:
        self.limits = limits or MessageLimits()
        self.agents: dict[str, AgentBox] = {}
        self.history: deque[Message] = deque()
        self.history_bytes = 0  # derived: the contents' sizes in ``history``
        self.inbox_bytes_total = 0  # derived: the contents' sizes in every inbox
        self.by_id: dict[str, Message] = {}  # messages in history, for idempotent sends
        self.pending: OrderedDict[str, _Pending] = OrderedDict()  # correlation id -> request
        self.answers: OrderedDict[str, Message] = OrderedDict()  # correlation id -> reply
        self.delivered: list[tuple[str, int]] = []  # (agent, cursor) since the owner took them
        self.replied: list[str] = []  # correlation ids answered since the owner took them
        self.totals: Counter[str] = Counter()  # sent, delivered, undelivered, answered, late

    # -- agents -----------------------------------------------------------------------------

    def agent(self, agent_id: str) -> AgentBox:
        box = self.agents.get(agent_id)
        if box is None:
            raise NotFoundError(f"no agent {agent_id}", agent=agent_id)
        return box

    def _box(self, agent_id: str, now_ms: int) -> AgentBox:
        box = self.agents.get(agent_id)
        if box is None:
            if len(self.agents) >= self.limits.agents_max:
                raise OverloadedError(f"too many agents ({self.limits.agents_max})")
            box = self.agents[agent_id] = AgentBox(id=agent_id, created_ms=now_ms)
        return box

    def connect(self, agent_id: str, *, ttl_ms: int, now_ms: int) -> AgentBox:
        """Open or renew a named session: the agent is live for at least ``ttl_ms`` from
        ``now_ms`` (a renewal never shortens what another holder of the session asked for)."""
        _check_agent_id(agent_id)
        if ttl_ms <= 0:
            raise ValidationError("ttl_ms must be positive")
        box = self._box(agent_id, now_ms)
        box.session_until_ms = max(box.session_until_ms, now_ms + ttl_ms)
        return box

    def session_live(self, agent_id: str, now_ms: int) -> bool:
        """Does the agent's named session last at ``now_ms``?"""
        box = self.agents.get(agent_id)
        return box is not None and box.session_until_ms > now_ms

    def disconnect(self, agent_id: str) -> AgentBox:
        box = self.agent(agent_id)
        box.session_until_ms = 0
        return box

    def subscribe(self, agent_id: str, pattern: str, *, now_ms: int) -> AgentBox:
        _check_agent_id(agent_id)
        if not pattern or len(pattern) > 256:
            raise ValidationError("a subscription pattern has 1 to 256 characters")
        box = self._box(agent_id, now_ms)
        if pattern not in box.subscriptions:
            if len(box.subscriptions) >= self.limits.subscriptions_max:
                raise OverloadedError(f"agent {agent_id} has too many subscriptions")
            box.subscriptions = sorted([*box.subscriptions, pattern])
        return box

    def unsubscribe(self, agent_id: str, pattern: str) -> AgentBox:
        box = self.agent(agent_id)
        if pattern not in box.subscriptions:
            raise NotFoundError(f"agent {agent_id} has no subscription {pattern}", agent=agent_id)
        box.subscriptions = [p for p in box.subscriptions if p != pattern]
        return box

    # -- sending ----------------------------------------------------------------------------

    def send(
        self,
        message: Message,
        *,
        is_live: Callable[[str], bool],
        timeout_ms: int | None = None,
    ) -> Sent:
        """Deliver ``message`` (``index``, ``timestamp_ms`` set by the command) by its ``to``."""
        seen = self.by_id.get(message.id)
        if seen is not None:
            if (seen.sender, seen.to, seen.type) != (message.sender, message.to, message.type):
                raise ValidationError(f"message id {message.id} was used for another message")
            return Sent(message=seen, duplicate=True)
        self._check(message)
        now = message.timestamp_ms
        cid = message.correlation_id
        if cid is not None and cid in self.pending and not message.requires_response:
            return Sent(message=self._answer(message, self.pending.pop(cid)))
        if message.requires_response:
            if message.to == BROADCAST or message.to.startswith(TOPIC_PREFIX):
                raise ValidationError("a request goes to one agent, not a broadcast or topic")
            if not is_live(message.to):
                raise NoResponderError(
                    f"no live agent {message.to} to answer the request", agent=message.to
                )
        recipients = self._recipients(message, is_live)
        full = self._without_room(recipients, message)
        if full and message.to not in (BROADCAST,) and not message.to.startswith(TOPIC_PREFIX):
            raise self._full_error(message)
        delivered = [a for a in recipients if a not in full]
        stored = replace(message, recipients=tuple(delivered), undelivered=tuple(full))
        for agent_id in delivered:
            self._deliver(self.agents[agent_id], stored)
        self.totals["sent"] += 1
        self.totals["delivered"] += len(delivered)
        self.totals["undelivered"] += len(full)
        if stored.requires_response:
            self._open_request(cid or stored.id, stored.sender, now + (timeout_ms or 0))
        self._remember(stored)
        return Sent(message=stored)

    def _without_room(self, recipients: list[str], message: Message) -> list[str]:
        """The recipients whose inbox, or the total of all inboxes, has no room (in order)."""
        full: list[str] = []
        total = self.inbox_bytes_total
        for agent_id in recipients:
            box = self._box(agent_id, message.timestamp_ms)
            if box.has_room(message, self.limits) and (
                total + message.size <= self.limits.inbox_total_bytes_max
            ):
                total += message.size
            else:
                full.append(agent_id)
        return full

    def _full_error(self, message: Message) -> OverloadedError:
        limits = self.limits
        if self.agents[message.to].has_room(message, limits):
            return OverloadedError(
                f"all inboxes hold {self.inbox_bytes_total} bytes of content; limit"
                f" {limits.inbox_total_bytes_max} (messages wait until their agents acknowledge)",
                agent=message.to,
            )
        return OverloadedError(
            f"inbox of {message.to} is full (at most {limits.inbox_max} messages"
            f" and {limits.inbox_bytes_max} bytes of content wait unacknowledged)",
            agent=message.to,
        )

    def _check(self, message: Message) -> None:
        if message.size > self.limits.max_message_bytes:
            raise PayloadTooLargeError(
                f"message of {message.size} bytes exceeds {self.limits.max_message_bytes}"
            )
        if not message.type or not message.to or not message.sender:
            raise ValidationError("a message needs from, to and type")
        if message.ttl_ms is not None and message.ttl_ms <= 0:
            raise ValidationError("ttl_ms must be positive")

    def _recipients(self, message: Message, is_live: Callable[[str], bool]) -> list[str]:
        if message.to == BROADCAST:
            return sorted(a for a in self.agents if a != message.sender and is_live(a))
        if message.to.startswith(TOPIC_PREFIX):
            topic = message.to[len(TOPIC_PREFIX) :]
            return sorted(
                a
                for a, box in self.agents.items()
                if a != message.sender and box.matches(topic, message.type)
            )
        _check_agent_id(message.to)
        return [message.to]

    def _deliver(self, box: AgentBox, message: Message) -> None:
        cursor = box.next_cursor
        box.next_cursor += 1
        box.inbox.append((cursor, message))
        box.inbox_bytes += message.size
        self.inbox_bytes_total += message.size
        box.received += 1
        self.delivered.append((box.id, cursor))

    def _answer(self, reply: Message, pending: _Pending) -> Message:
        late = reply.timestamp_ms > pending.deadline_ms
        self.totals["sent"] += 1
        self.totals["late" if late else "answered"] += 1
        stored = replace(reply, late=late, recipients=() if late else (pending.requester,))
        if not late:
            assert reply.correlation_id is not None
            self.answers[reply.correlation_id] = stored
            while len(self.answers) > self.limits.answers_max:
                self.answers.popitem(last=False)
            self.replied.append(reply.correlation_id)
        self._remember(stored)
        return stored

    def _open_request(self, correlation_id: str, requester: str, deadline_ms: int) -> None:
        self.pending[correlation_id] = _Pending(requester=requester, deadline_ms=deadline_ms)
        while len(self.pending) > self.limits.pending_max:
            self.pending.popitem(last=False)
        # Requests long past their deadline are forgotten (a reply that late is not marked).
        while self.pending:
            oldest = next(iter(self.pending.values()))
            if oldest.deadline_ms + LATE_REPLY_WINDOW_MS >= deadline_ms:
                break
            self.pending.popitem(last=False)

    def waiting_requests(self, now_ms: int) -> int:
        return sum(1 for p in self.pending.values() if p.deadline_ms > now_ms)

    def _remember(self, message: Message) -> None:
        self.history.append(message)
        self.history_bytes += message.size
        self.by_id[message.id] = message
        limits = self.limits
        while len(self.history) > 1 and (
            len(self.history) > limits.history_max or self.history_bytes > limits.history_bytes_max
        ):
            old = self.history.popleft()
            self.history_bytes -= old.size
            if self.by_id.get(old.id) is old:
                del self.by_id[old.id]

    # -- reading and acknowledging ----------------------------------------------------------

    def read(
        self, agent_id: str, *, after: int | None, now_ms: int, limit: int = 100
    ) -> list[tuple[int, Message]]:
        """Unexpired messages after ``after`` (default: the acknowledged cursor), in order."""
        box = self.agents.get(agent_id)
        if box is None or not box.inbox:
            return []
        start = box.acked if after is None else after
        # Entries leave only from the head, so cursors in the inbox are consecutive.
        skip = max(0, start + 1 - box.inbox[0][0])
        out = []
        for cursor, message in itertools.islice(box.inbox, skip, None):
            if cursor > start and not message.expired(now_ms):
                out.append((cursor, message))
                if len(out) >= limit:
                    break
        return out

    def ack(self, agent_id: str, cursor: int, *, now_ms: int) -> AgentBox:
        """Everything up to ``cursor`` is handled: it leaves the inbox, as do expired messages."""
        box = self.agent(agent_id)
        if cursor >= box.next_cursor:
            raise ValidationError(
                f"cursor {cursor} is beyond the last delivery ({box.next_cursor - 1})"
            )
        box.acked = max(box.acked, cursor)
        inbox = box.inbox
        while inbox and (inbox[0][0] <= box.acked or inbox[0][1].expired(now_ms)):
            self.inbox_bytes_total -= box.drop_head()
        return box

    def take_deliveries(self) -> tuple[list[tuple[str, int]], list[str]]:
        delivered, self.delivered = self.delivered, []
        replied, self.replied = self.replied, []
        return delivered, replied

    # -- history ----------------------------------------------------------------------------

    def query(
        self,
        *,
        agent: str | None = None,
        type_: str | None = None,
        correlation_id: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 100,
    ) -> list[Message]:
        """The newest ``limit`` messages of the history that pass every filter, oldest first."""
        out: list[Message] = []
        for m in reversed(self.history):
            if (
                (agent is None or agent in (m.sender, m.to) or agent in m.recipients)
                and (type_ is None or m.type == type_)
                and (correlation_id is None or correlation_id in (m.correlation_id, m.id))
                and (since_ms is None or m.timestamp_ms >= since_ms)
                and (until_ms is None or m.timestamp_ms <= until_ms)
            ):
                out.append(m)
                if len(out) >= limit:
                    break
        out.reverse()
        return out

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain dicts and lists; a message in several inboxes and the history is stored once."""
        store: dict[str, dict[str, Any]] = {}

        def ref(m: Message) -> str:
            key = f"{m.index}:{m.id}"
            store.setdefault(key, m.to_wire())
            return key

        agents = [
            {
                "id": b.id,
                "created_ms": b.created_ms,
                "subscriptions": b.subscriptions,
                "inbox": [[c, ref(m)] for c, m in b.inbox],
                "next_cursor": b.next_cursor,
                "acked": b.acked,
                "session_until_ms": b.session_until_ms,
                "received": b.received,
            }
            for b in self.agents.values()
        ]
        return {
            "agents": agents,
            "history": [ref(m) for m in self.history],
            "pending": [[c, p.requester, p.deadline_ms] for c, p in self.pending.items()],
            "answers": [[c, ref(m)] for c, m in self.answers.items()],
            "store": store,
            "totals": dict(self.totals),
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.__init__(self.limits)  # type: ignore[misc]
        store = {k: Message.from_wire(v) for k, v in data["store"].items()}
        for a in data["agents"]:
            box = AgentBox(
                id=a["id"],
                created_ms=a["created_ms"],
                subscriptions=list(a["subscriptions"]),
                inbox=deque((c, store[k]) for c, k in a["inbox"]),
                next_cursor=a["next_cursor"],
                acked=a["acked"],
                session_until_ms=a["session_until_ms"],
                received=a["received"],
            )
            box.inbox_bytes = sum(m.size for _, m in box.inbox)
            self.inbox_bytes_total += box.inbox_bytes
            self.agents[box.id] = box
        for key in data["history"]:
            message = store[key]
            self.history.append(message)
            self.history_bytes += message.size
            self.by_id[message.id] = message
        for cid, requester, deadline in data["pending"]:
            self.pending[cid] = _Pending(requester=requester, deadline_ms=deadline)
        self.totals = Counter(data.get("totals", {}))
        for cid, key in data["answers"]:
            self.answers[cid] = store[key]


def _check_agent_id(agent_id: str) -> None:
    if (
        not agent_id
        or len(agent_id) > 200
        or agent_id == BROADCAST
        or agent_id.startswith(TOPIC_PREFIX)
        or any(ch.isspace() for ch in agent_id)
    ):
        raise ValidationError(f"invalid agent id {agent_id!r}")
