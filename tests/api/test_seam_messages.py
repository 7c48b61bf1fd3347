"""Message and agent routes in process: send, inbox, ack, topics, batches, request-reply."""

from __future__ import annotations

import asyncio

from tests.api.conftest import Master, ok, problem


async def test_send_read_ack(master: Master) -> None:
    ok(await master.client.post("/api/v1/agents/bob/connect", json={"ttl_s": 60}))
    sent = ok(
        await master.client.post(
            "/api/v1/messages",
            json={"from": "alice", "to": "bob", "type": "Notification", "content": {"n": 1}},
        ),
        201,
    )
    assert sent["recipients"] == ["bob"] and sent["duplicate"] is False
    again = {"id": sent["id"], "from": "alice", "to": "bob", "type": "Notification"}
    assert ok(await master.client.post("/api/v1/messages", json=again))["duplicate"] is True
    inbox = ok(await master.client.get("/api/v1/agents/bob/inbox"))
    assert [m["content"] for m in inbox["messages"]] == [{"n": 1}]
    cursor = inbox["messages"][0]["cursor"]
    acked = ok(await master.client.post("/api/v1/agents/bob/ack", json={"cursor": cursor}))
    assert acked["acked"] == cursor and acked["inbox_depth"] == 0
    assert ok(await master.client.get("/api/v1/agents/bob/inbox"))["messages"] == []
    history = ok(await master.client.get("/api/v1/messages", params={"agent": "bob"}))
    assert [m["id"] for m in history["messages"]] == [sent["id"]]
    agents = ok(await master.client.get("/api/v1/agents"))
    assert [a["id"] for a in agents["agents"]] == ["bob"]
    assert ok(await master.client.get("/api/v1/agents/bob"))["live"] is True


async def test_a_long_poll_is_answered_when_a_message_arrives(master: Master) -> None:
    ok(await master.client.post("/api/v1/agents/bob/connect"))
    poll = asyncio.create_task(master.client.get("/api/v1/agents/bob/inbox", params={"wait_s": 30}))
    while "bob" not in master.service.inbox_waiters._waiters:  # the poll waits now
        await asyncio.sleep(0)
    ok(await master.client.post("/api/v1/messages", json={"to": "bob", "type": "Ping"}), 201)
    answer = ok(await asyncio.wait_for(poll, 10))
    assert [m["type"] for m in answer["messages"]] == ["Ping"]


async def test_topics_and_batches(master: Master) -> None:
    for agent in ("a1", "a2"):
        ok(await master.client.post(f"/api/v1/agents/{agent}/connect"))
    ok(await master.client.put("/api/v1/agents/a1/subscriptions/builds.*"))
    ok(await master.client.put("/api/v1/agents/a2/subscriptions/builds.*"))
    answer = await master.client.delete("/api/v1/agents/a2/subscriptions/builds.*")
    assert answer.status_code == 204
    batch = {
        "messages": [
            {"topic": "builds.done", "type": "StatusUpdate", "content": 1},
            {"to": "a2", "type": "StatusUpdate", "content": 2},
            {"to": "nobody-at-all", "type": "StatusUpdate", "content": 3},
        ]
    }
    sent = ok(await master.client.post("/api/v1/messages/batch", json=batch), 201)
    assert sent["count"] == 3
    assert sent["messages"][0]["recipients"] == ["a1"]
    assert sent["messages"][1]["recipients"] == ["a2"]
    a1 = ok(await master.client.get("/api/v1/agents/a1/inbox"))
    assert [m["content"] for m in a1["messages"]] == [1]


async def test_request_reply(master: Master) -> None:
    ok(await master.client.post("/api/v1/agents/helper/connect"))
    body = {"to": "helper", "type": "ResourceQuery", "content": "cpu?", "timeout_ms": 10_000}
    request = asyncio.create_task(master.client.post("/api/v1/messages/request", json=body))
    while not master.machine.messages.agents["helper"].inbox:
        await asyncio.sleep(0)
    [(cursor, asked)] = master.machine.messages.read("helper", after=None, now_ms=master.clock())
    reply = {
        "from": "helper",
        "to": asked.sender,
        "type": "ResourceResponse",
        "content": "plenty",
        "correlation_id": asked.correlation_id,
    }
    ok(await master.client.post("/api/v1/messages", json=reply), 201)
    answer = ok(await asyncio.wait_for(request, 10))
    assert answer["reply"]["content"] == "plenty" and cursor >= 1


async def test_message_problems(master: Master) -> None:
    nobody = {"to": "ghost", "type": "TaskRequest", "timeout_ms": 1000}
    problem(await master.client.post("/api/v1/messages/request", json=nobody), 404, "no-responder")
    needs = {"to": "bob", "type": "X", "requires_response": True}
    problem(await master.client.post("/api/v1/messages", json=needs), 422)
    both = {"to": "bob", "topic": "t", "type": "X"}
    problem(await master.client.post("/api/v1/messages", json=both), 422)
    problem(await master.client.post("/api/v1/messages", json={"to": "bob"}), 422)
    problem(await master.client.get("/api/v1/messages", params={"since": "yesterday"}), 422)
    problem(await master.client.get("/api/v1/agents/nobody"), 404, "not-found")
    problem(await master.client.post("/api/v1/agents/bob/ack", json={"cursor": -1}), 422)
    assert master.machine.messages.query(limit=10) == []
