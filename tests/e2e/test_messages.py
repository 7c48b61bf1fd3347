"""Agent messaging end to end: tasks on workers, named agents, restarts, failover."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from agentflow.client import AsyncClient, Client
from agentflow.errors import (
    NoResponderError,
    OverloadedError,
    PayloadTooLargeError,
    TimeoutExpiredError,
)
from tests.e2e.procs import BIN, Processes, live_workers, wait_until

RESPONDER = """
from agentflow import Client
with Client() as client:
    me = client.agent()  # this task
    for message in me.messages():
        if message.requires_response:
            me.reply(message, "TaskResponse", {"sum": sum(message.content), "by": me.id})
            break
"""

REQUESTER = """
import json, sys
from agentflow import Client
with Client() as client:
    reply = client.agent().request(sys.argv[1], "TaskRequest", [1, 2, 3], timeout_s=20)
    print(json.dumps(reply.content))
"""


def test_two_tasks_on_different_workers_exchange_a_request_and_a_reply(
    procs: Processes,
) -> None:
    _, url = procs.master()
    procs.worker("w1", url, "--slots", "1")
    procs.worker("w2", url, "--slots", "1")
    wait_until(lambda: live_workers(url) == 2, what="two workers")
    with Client(url) as client:
        responder = client.submit(args=[sys.executable, "-c", RESPONDER])
        wait_until(lambda: client.get(responder.id).status == "running", what="the responder")
        requester = client.submit(args=[sys.executable, "-c", REQUESTER, responder.id])
        done = client.wait(requester.id, timeout_s=60)
        assert done.ok, client.output(requester.id)
        assert client.wait(responder.id, timeout_s=30).ok
        assert done.worker_id != client.get(responder.id).worker_id
        out = client.output(requester.id)["stdout"]
        assert '"sum": 6' in out and responder.id in out
        kinds = [m["type"] for m in client.message_history(correlation_id=None, agent=responder.id)]
        assert kinds == ["TaskRequest", "TaskResponse"]


def test_broadcast_topics_ttl_and_at_least_once_redelivery(procs: Processes) -> None:
    _, url = procs.master()
    with Client(url) as client:
        agents = {name: client.agent(name) for name in ("a", "b", "c")}
        agents["a"].broadcast("Notification", "hello")
        for name in ("b", "c"):  # every live agent but the sender, once
            assert [m.content for m in agents[name].receive()] == ["hello"]
        assert agents["a"].receive() == []
        agents["b"].ack(agents["b"].receive()[0])
        assert agents["b"].receive() == []  # acknowledged: not again
        assert [m.content for m in agents["c"].receive()] == ["hello"]  # not acked: again
        agents["c"].subscribe("builds.*")
        agents["a"].publish("builds.linux", "StatusUpdate", "green")
        agents["a"].publish("deploys.eu", "StatusUpdate", "ignored")
        assert [m.content for m in agents["c"].receive()] == ["hello", "green"]
        agents["c"].unsubscribe("builds.*")
        agents["a"].publish("builds.linux", "StatusUpdate", "after")
        assert len(agents["c"].receive()) == 2
        agents["a"].send("b", "Notification", "brief", ttl_ms=200)
        time.sleep(0.3)
        assert agents["b"].receive() == []  # past its TTL: never delivered
        for agent in agents.values():
            agent.close()


def test_no_responder_timeout_and_late_reply(procs: Processes) -> None:
    _, url = procs.master()
    with Client(url) as client, client.agent("asker") as asker, client.agent("slow") as slow:
        with pytest.raises(NoResponderError):
            asker.request("nobody-home", "TaskRequest", 1, timeout_s=5)
        started = time.monotonic()
        with pytest.raises(TimeoutExpiredError):
            asker.request("slow", "TaskRequest", 1, timeout_s=0.3)
        assert time.monotonic() - started >= 0.3
        (request,) = slow.receive()
        slow.reply(request, "TaskResponse", "too late")
        history = client.message_history(correlation_id=request.correlation_id)
        assert [(m["type"], m["late"], m["recipients"]) for m in history] == [
            ("TaskRequest", False, ["slow"]),
            ("TaskResponse", True, []),
        ]
        assert asker.receive() == []  # a late reply is history, not an answer or inbox entry
    problem = httpx.post(
        f"{url}/api/v1/messages/request",
        json={"to": "nobody-home", "type": "TaskRequest"},
        timeout=5,
    )
    assert problem.status_code == 404 and problem.json()["code"] == "no-responder"
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert 'agentflow_messages_total{event="late"} 1.0' in metrics
    assert "agentflow_requests_pending 0.0" in metrics


def test_bounds_are_clear_errors_and_history_is_evicted_oldest_first(procs: Processes) -> None:
    _, url = procs.master(
        "m1", None, "--message-history", "5", "--inbox-max", "3", "--max-message-bytes", "1K"
    )
    with Client(url) as client, client.agent("sender") as sender:
        with pytest.raises(PayloadTooLargeError):
            sender.send("full", "Notification", "x" * 2000)
        for i in range(3):
            sender.send("full", "Notification", i)
        with pytest.raises(OverloadedError):
            sender.send("full", "Notification", 3)
        for i in range(3):
            sender.send("other", "Notification", i + 10)
        history = client.message_history(limit=100)
        assert [m["content"] for m in history] == [1, 2, 10, 11, 12]
        inbox = client.request("GET", "/api/v1/agents/full/inbox")["messages"]
        assert [m["content"] for m in inbox] == [0, 1, 2]  # evicted from history, kept here
        # A batch: one durable command, in order; a refused message refuses only itself.
        answers = sender.send_many(
            [("batch", "Note", 1), ("full", "Note", 9), ("batch", "Note", 2)]
        )
        assert [a.get("error", {}).get("status") for a in answers] == [None, 429, None]
        batch_inbox = client.request("GET", "/api/v1/agents/batch/inbox")["messages"]
        assert [m["content"] for m in batch_inbox] == [1, 2]
    for body, status in (
        ({"to": "x"}, 422),
        ({"to": "x", "topic": "y", "type": "T"}, 422),
        ({"to": "bad id", "type": "T"}, 422),
        ({"to": "x", "type": "T", "ttl_ms": 0}, 422),
        ({"to": "x", "type": "T", "surprise": 1}, 422),
    ):
        r = httpx.post(f"{url}/api/v1/messages", json=body, timeout=5)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    ack = httpx.post(f"{url}/api/v1/agents/nobody/ack", json={"cursor": 1}, timeout=5)
    assert ack.status_code == 404


def test_a_reconnecting_agent_resumes_from_its_cursor_across_a_master_restart(
    procs: Processes, tmp_path: Path
) -> None:
    master, url = procs.master()
    with Client(url) as client:
        sender = client.agent("sender")
        for i in range(5):
            sender.send("reader", "Notification", i)
        reader = client.agent("reader")
        first = reader.receive(limit=2)
        reader.ack(first[-1])
        sender.close()
    master.kill9()  # the reader "crashes" with it: nothing was acknowledged past cursor 2
    _, url = procs.master("m1", int(url.rsplit(":", 1)[1]), data_dir=tmp_path / "m1-data")
    with Client(url) as client, client.agent("reader") as reader:
        assert [m.content for m in reader.receive()] == [2, 3, 4]
        assert [m.cursor for m in reader.receive()] == [3, 4, 5]


def test_stream_delivers_in_order_and_messages_survive_a_leader_kill(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()

    async def scenario() -> list[object]:
        async with AsyncClient(cluster.urls) as client, client.agent("listener") as listener:
            received: list[object] = []

            async def listen() -> None:
                async for message in listener:
                    received.append(message.content)
                    if len(received) == 6:
                        return

            task = asyncio.create_task(listen())
            sender = client.agent("talker")
            await sender.open()
            for i in range(3):
                await sender.send("listener", "Notification", i)
            while len(received) < 3:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(cluster.kill9, leader)
            for i in range(3, 6):
                await sender.send("listener", "Notification", i)
            await asyncio.wait_for(task, 30)
            return received

    assert asyncio.run(scenario()) == [0, 1, 2, 3, 4, 5]


def test_cli_msg_from_inside_a_task(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url, "--slots", "2")
    wait_until(lambda: live_workers(url) == 1, what="a worker")
    env = {**os.environ, "AGENTFLOW_URL": url}
    cli = str(BIN / "agentflow")
    with Client(url) as client, client.agent("planner") as planner:
        task = client.submit(
            command=f"{cli} msg send planner StatusUpdate '{{\"done\": 3}}' && "
            f"{cli} msg recv --wait 20s"
        )
        (update,) = planner.receive(wait_s=20)
        assert (update.sender, update.type, update.content) == (
            task.id,
            "StatusUpdate",
            {"done": 3},
        )
        planner.reply(update, "Notification", "thanks")
        assert client.wait(task.id, timeout_s=30).ok
        assert '"content": "thanks"' in client.output(task.id)["stdout"]
    requested = subprocess.run(
        [cli, "msg", "request", "nobody", "TaskRequest", "1", "--timeout", "1s"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert requested.returncode == 4 and requested.stderr.startswith("error: no live agent")


def test_followers_forward_blocking_lock_waits_and_serve_inbox_long_polls(
    procs: Processes,
) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    follower = cluster.url(next(n for n in cluster.masters if n != leader))
    on_leader = cluster.url(leader)
    with httpx.Client(timeout=30) as http:
        held = http.post(f"{on_leader}/api/v1/locks/x/acquire", json={"session": "A"}).json()

        def wait_on_follower() -> httpx.Response:
            body = {"session": "B", "wait_s": 20}
            return http.post(f"{follower}/api/v1/locks/x/acquire", json=body)

        def poll_on_follower() -> httpx.Response:
            return http.get(f"{follower}/api/v1/agents/inbox-agent/inbox", params={"wait_s": 20})

        with ThreadPoolExecutor(2) as pool:
            waiting = pool.submit(wait_on_follower)
            polling = pool.submit(poll_on_follower)
            wait_until(
                lambda: http.get(f"{on_leader}/api/v1/locks/x").json()["waiters"],
                what="B waiting through the follower",
            )
            http.post(
                f"{on_leader}/api/v1/locks/x/release",
                json={"session": "A", "token": held["token"]},
            )
            http.post(
                f"{on_leader}/api/v1/messages",
                json={"from": "t", "to": "inbox-agent", "type": "Note", "content": "hi"},
            )
            granted = waiting.result(timeout=30)
            polled = polling.result(timeout=30)
        assert granted.status_code == 200 and granted.json()["token"] > held["token"]
        assert [m["content"] for m in polled.json()["messages"]] == ["hi"]


def test_stream_frames_send_ack_and_refuse_bad_input(procs: Processes) -> None:
    from websockets.asyncio.client import connect

    _, url = procs.master()
    ws_url = "ws" + url.removeprefix("http") + "/api/v1/agents"

    async def scenario() -> None:
        async with (
            connect(f"{ws_url}/writer/stream?push=false") as writer,
            connect(f"{ws_url}/reader/stream") as reader,
        ):
            for ref in range(3):
                frame = {"send": {"to": "reader", "type": "Note", "content": ref}, "ref": ref}
                await writer.send(json.dumps(frame))
            answers = [json.loads(await writer.recv()) for _ in range(3)]
            assert [(a["ref"], a["from"], a["recipients"]) for a in answers] == [
                (r, "writer", ["reader"]) for r in range(3)
            ]
            pushed = [json.loads(await reader.recv()) for _ in range(3)]
            assert [(p["cursor"], p["message"]["content"]) for p in pushed] == [
                (1, 0),
                (2, 1),
                (3, 2),
            ]
            await reader.send(json.dumps({"ack": 2}))
            await writer.send(json.dumps({"send": {"to": "reader"}, "ref": "bad"}))
            refused = json.loads(await writer.recv())
            assert refused["ref"] == "bad" and refused["error"]["status"] == 422
            request = {"to": "reader", "type": "Q", "requires_response": True}
            await writer.send(json.dumps({"send": request, "ref": "rq"}))
            assert json.loads(await writer.recv())["error"]["status"] == 422
            await writer.send("not json")  # undecodable: answered, then the stream closes
            assert json.loads(await writer.recv())["error"]["status"] == 400
            await writer.wait_closed()
            assert writer.close_code == 1007

    asyncio.run(scenario())
    with Client(url) as client:
        (reader,) = [a for a in client.agents() if a["id"] == "reader"]
        assert (reader["acked"], reader["inbox_depth"], reader["live"]) == (2, 1, True)
