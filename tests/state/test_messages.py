"""Messaging in the replicated state machine: inboxes, cursors, topics, requests, bounds."""

from __future__ import annotations

from agentflow.errors import (
    NoResponderError,
    OverloadedError,
    PayloadTooLargeError,
    ValidationError,
)
from agentflow.state import StateMachine
from agentflow.state.commands import (
    AckMessages,
    AssignTasks,
    ConnectAgent,
    DisconnectAgent,
    SendMessage,
    SendMessages,
    SubmitTasks,
    Subscribe,
    Unsubscribe,
)
from agentflow.state.events import MessageDelivered, ReplyArrived
from agentflow.state.messages import MessageLimits, Sent
from tests.state.test_machine import Log, new, worker

_ids = iter(range(1, 1_000_000))


def send(log: Log, sender: str, to: str, type_: str = "Notification", **kw: object) -> object:
    now = kw.pop("now_ms", 0)
    mid = kw.pop("id", f"m{next(_ids)}")
    return log(SendMessage(now_ms=now, id=mid, sender=sender, to=to, type=type_, **kw))  # type: ignore[arg-type]


def inbox(log: Log, agent: str, after: int | None = None, now_ms: int = 0) -> list[str]:
    return [m.id for _, m in log.sm.messages.read(agent, after=after, now_ms=now_ms)]


def test_point_to_point_waits_in_the_inbox_until_acknowledged() -> None:
    log = Log()
    first = send(log, "a", "b", content={"n": 1}, id="x1")
    assert isinstance(first, Sent) and first.message.recipients == ("b",)
    send(log, "a", "b", id="x2")
    send(log, "c", "b", id="x3")
    assert inbox(log, "b") == ["x1", "x2", "x3"]  # b never connected: it waits
    log(AckMessages(now_ms=1, agent_id="b", cursor=2))
    assert inbox(log, "b") == ["x3"]  # unacknowledged: delivered again on the next read
    assert inbox(log, "b", after=3) == []
    refused = log(AckMessages(now_ms=1, agent_id="b", cursor=9))
    assert isinstance(refused, ValidationError)


def test_a_repeated_id_is_not_delivered_twice() -> None:
    log = Log()
    send(log, "a", "b", id="same")
    again = send(log, "a", "b", id="same")
    assert isinstance(again, Sent) and again.duplicate
    assert inbox(log, "b") == ["same"]
    assert isinstance(send(log, "a", "c", id="same"), ValidationError)


def test_broadcast_reaches_each_live_agent_once_but_not_the_sender() -> None:
    log = Log()
    for agent in ("a", "b", "c"):
        log(ConnectAgent(now_ms=0, agent_id=agent, ttl_ms=1000))
    log(ConnectAgent(now_ms=0, agent_id="gone", ttl_ms=10))
    log(DisconnectAgent(now_ms=0, agent_id="c"))
    sent = send(log, "a", "*", now_ms=500)
    assert isinstance(sent, Sent) and sent.message.recipients == ("b",)
    events = [e for e in log.sm.drain_events() if isinstance(e, MessageDelivered)]
    assert [(e.agent_id, e.cursor) for e in events] == [("b", 1)]


def test_a_running_task_is_a_live_agent() -> None:
    log = Log()
    worker(log)
    log(SubmitTasks(now_ms=0, tasks=[new("t1")]))
    assert isinstance(send(log, "x", "t1", requires_response=True), NoResponderError)
    log(AssignTasks(now_ms=0, assignments=[("t1", "w1")]))
    sent = send(log, "x", "t1", requires_response=True, timeout_ms=1000)
    assert isinstance(sent, Sent) and sent.message.recipients == ("t1",)


def test_topics_match_patterns_and_types_until_unsubscribed() -> None:
    log = Log()
    log(Subscribe(now_ms=0, agent_id="builder", pattern="builds.*"))
    log(Subscribe(now_ms=0, agent_id="watcher", pattern="StatusUpdate"))
    sent = send(log, "ci", "topic:builds.linux", "StatusUpdate")
    assert isinstance(sent, Sent) and sent.message.recipients == ("builder", "watcher")
    sent = send(log, "ci", "topic:deploys.eu", "Notification")
    assert isinstance(sent, Sent) and sent.message.recipients == ()
    log(Unsubscribe(now_ms=0, agent_id="builder", pattern="builds.*"))
    sent = send(log, "ci", "topic:builds.linux", "Notification")
    assert isinstance(sent, Sent) and sent.message.recipients == ()
    assert log.sm.messages.agents["watcher"].subscriptions == ["StatusUpdate"]


def test_an_expired_message_is_never_delivered() -> None:
    log = Log()
    send(log, "a", "b", id="short", ttl_ms=100, now_ms=0)
    send(log, "a", "b", id="long", now_ms=0)
    assert inbox(log, "b", now_ms=99) == ["short", "long"]
    assert inbox(log, "b", now_ms=100) == ["long"]
    log(AckMessages(now_ms=200, agent_id="b", cursor=0))  # purges the expired one
    assert [m.id for _, m in log.sm.messages.agents["b"].inbox] == ["long"]


def test_request_answered_in_time_and_a_late_reply_kept_only_in_history() -> None:
    log = Log()
    log(ConnectAgent(now_ms=0, agent_id="svc", ttl_ms=60_000))
    req = send(log, "asker", "svc", "TaskRequest", id="r1", requires_response=True, timeout_ms=50)
    assert isinstance(req, Sent)
    log.sm.drain_events()
    reply = send(log, "svc", "asker", "TaskResponse", correlation_id="r1", now_ms=40)
    assert isinstance(reply, Sent) and reply.message.recipients == ("asker",)
    assert log.sm.messages.answers["r1"].id == reply.message.id
    replies = [e for e in log.sm.drain_events() if isinstance(e, ReplyArrived)]
    assert [e.correlation_id for e in replies] == ["r1"]
    assert inbox(log, "asker") == []  # the answer goes to the waiting request, not an inbox
    send(log, "asker", "svc", "TaskRequest", id="r2", requires_response=True, timeout_ms=50)
    late = send(log, "svc", "asker", "TaskResponse", correlation_id="r2", now_ms=51)
    assert isinstance(late, Sent) and late.message.late and late.message.recipients == ()
    assert "r2" not in log.sm.messages.answers
    assert [m.late for m in log.sm.messages.query(correlation_id="r2")] == [False, True]


def test_bounds_are_clear_errors_and_history_evicts_oldest_first() -> None:
    log = Log()
    log.sm = StateMachine(message_limits=MessageLimits(inbox_max=2, history_max=3))
    assert isinstance(send(log, "a", "b", size=300 * 1024), PayloadTooLargeError)
    send(log, "a", "b", id="h1")
    send(log, "a", "b", id="h2")
    assert isinstance(send(log, "a", "b", id="h3"), OverloadedError)
    log(ConnectAgent(now_ms=0, agent_id="b", ttl_ms=1000))
    log(ConnectAgent(now_ms=0, agent_id="c", ttl_ms=1000))
    sent = send(log, "a", "*", id="h4")
    assert isinstance(sent, Sent)
    assert (sent.message.recipients, sent.message.undelivered) == (("c",), ("b",))
    send(log, "a", "c", id="h5")
    assert [m.id for m in log.sm.messages.history] == ["h2", "h4", "h5"]
    assert inbox(log, "b") == ["h1", "h2"]  # evicted from history, still in the inbox


def test_order_per_pair_and_snapshot_identity() -> None:
    log = Log()
    log(Subscribe(now_ms=0, agent_id="b", pattern="*"))
    log(ConnectAgent(now_ms=0, agent_id="b", ttl_ms=1000))
    for i in range(5):
        send(log, "a", "b" if i % 2 else "topic:t", id=f"o{i}")
    send(log, "a", "b", id="req", requires_response=True, timeout_ms=10)
    assert inbox(log, "b") == ["o0", "o1", "o2", "o3", "o4", "req"]
    copy = StateMachine()
    copy.restore(log.sm.snapshot())
    assert copy.digest() == log.sm.digest()
    assert inbox(log, "b") == [m.id for _, m in copy.messages.read("b", after=None, now_ms=0)]
    assert "req" in copy.messages.pending


def test_invalid_addresses_are_refused() -> None:
    log = Log()
    assert isinstance(send(log, "a", "bad id"), ValidationError)
    assert isinstance(send(log, "a", "*", requires_response=True), ValidationError)
    assert isinstance(log(Subscribe(now_ms=0, agent_id="*", pattern="x")), ValidationError)


def test_a_renewal_never_shortens_a_session_and_disconnect_ends_it() -> None:
    log = Log()
    log(ConnectAgent(now_ms=0, agent_id="a", ttl_ms=30_000))  # the SDK's session
    log(ConnectAgent(now_ms=100, agent_id="a", ttl_ms=10_000))  # a stream's shorter renewal
    assert log.sm.messages.agents["a"].session_until_ms == 30_000
    log(DisconnectAgent(now_ms=200, agent_id="a"))
    assert log.sm.messages.agents["a"].session_until_ms == 0


def test_a_batch_is_delivered_in_order_and_refuses_only_what_is_wrong() -> None:
    log = Log()
    log.sm = StateMachine(message_limits=MessageLimits(inbox_max=2))
    batch = [
        SendMessage(now_ms=0, id=f"b{i}", sender="a", to="r", type="Note", content=i)
        for i in range(3)
    ]
    batch.append(
        SendMessage(now_ms=0, id="q", sender="a", to="r", type="Q", requires_response=True)
    )
    batch.append(SendMessage(now_ms=0, id="other", sender="a", to="s", type="Note"))
    results = log(SendMessages(now_ms=5, messages=batch))
    assert isinstance(results, list)
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["Sent", "Sent", "OverloadedError", "ValidationError", "Sent"]
    assert inbox(log, "r") == ["b0", "b1"]
    assert inbox(log, "s") == ["other"]
    assert log.sm.messages.by_id["other"].timestamp_ms == 5


def test_inboxes_and_history_are_bounded_in_bytes_too() -> None:
    log = Log()
    limits = MessageLimits(inbox_bytes_max=1000, history_bytes_max=1500)
    log.sm = StateMachine(message_limits=limits)
    send(log, "a", "b", id="k1", size=600)
    refused = send(log, "a", "b", id="k2", size=600)
    assert isinstance(refused, OverloadedError) and "bytes" in refused.detail
    send(log, "a", "c", id="k3", size=600)
    send(log, "a", "c", id="k4", size=400)  # the history is over 1,500 bytes: k1 leaves it
    assert [m.id for m in log.sm.messages.history] == ["k3", "k4"]
    log(AckMessages(now_ms=0, agent_id="b", cursor=1))
    assert isinstance(send(log, "a", "b", id="k5", size=600), Sent)  # room again
