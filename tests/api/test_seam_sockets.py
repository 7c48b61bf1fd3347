"""Sockets in process over the in-memory log (a worker session, an event subscription refused):
starlette's TestClient carries the WebSocket (httpx's ASGI transport has none), on a loop of its
own."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from starlette.exceptions import StarletteDeprecationWarning
from starlette.websockets import WebSocketDisconnect

with warnings.catch_warnings():  # it asks for httpx2, which is not a dependency here
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient, WebSocketTestSession

from agentflow import wire
from agentflow.api.app import create_app
from agentflow.api.service import MasterService, state_machine
from agentflow.cluster.memlog import MemoryLog
from agentflow.config import MasterConfig
from tests.api.conftest import BASE_URL

SESSION = "ws://127.0.0.1:6767/api/v1/workers/w1/session"  # a relative one gets Host: testserver


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[TestClient, MemoryLog]]:
    config = MasterConfig(data_dir=tmp_path)
    log = MemoryLog(state_machine(config), node_id=config.node_id, api_url=config.api_url)
    with TestClient(create_app(MasterService(config, log=log)), base_url=BASE_URL) as client:
        yield client, log


def receive(ws: WebSocketTestSession, kind: str) -> dict[str, Any]:
    """The next frame of ``kind`` (a batch of assignments is opened)."""
    while True:
        frame: dict[str, Any] = msgpack.unpackb(ws.receive_bytes())
        frames = frame["frames"] if frame["t"] == "assigns" else [frame]
        for one in frames:
            if one["t"] == kind:
                return one


def until_closed(ws: WebSocketTestSession) -> int:
    """Read until the master closes the socket; its close code. (The app has ended its
    session before the test leaves the socket's block, which cancels what still runs.)"""
    with pytest.raises(WebSocketDisconnect) as closed:
        while True:
            ws.receive_bytes()
    return closed.value.code


def hello(ws: WebSocketTestSession) -> dict[str, Any]:
    ws.send_bytes(wire.pack({"t": "hello", "worker_id": "w1", "slots": 1}))
    return receive(ws, "welcome")


def test_a_worker_session_runs_a_task(app: tuple[TestClient, MemoryLog]) -> None:
    client, log = app
    with client.websocket_connect(SESSION) as ws:
        assert hello(ws)["protocol"] == 1  # its hello names none: protocol 1, answered in it
        assert client.get("/api/v1/workers/w1").json()["state"] == "active"
        task = client.post("/api/v1/tasks", json={"command": "echo hi"}).json()
        assigned = receive(ws, "assign")
        assert assigned["task_id"] == task["id"] and assigned["token"] == task["fencing_token"]
        token = assigned["token"]
        outcome = {"task_id": task["id"], "token": token, "status": "completed", "exit_code": 0}
        report = {"t": "report", "seq": 1, "started": [[task["id"], token]], "outcomes": [outcome]}
        ws.send_bytes(wire.pack(report))
        assert receive(ws, "ack")["seq"] == 1
        stale = outcome | {"token": token + 1, "status": "failed"}
        ws.send_bytes(wire.pack({"t": "report", "seq": 2, "outcomes": [stale]}))
        assert receive(ws, "error")["seq"] == 2  # a superseded attempt is refused
        ws.send_bytes(wire.pack({"t": "bye"}))
        until_closed(ws)
    done = client.get(f"/api/v1/tasks/{task['id']}").json()
    assert done["status"] == "completed" and done["attempts"] == 1
    assert log.machine.workers["w1"].state.value == "offline"  # the session ended


def test_a_follower_sends_a_worker_to_the_leader(app: tuple[TestClient, MemoryLog]) -> None:
    client, log = app
    log.set_leader("m2", "http://127.0.0.1:6768")
    with client.websocket_connect(SESSION) as ws:
        ws.send_bytes(wire.pack({"t": "hello", "worker_id": "w1", "slots": 1}))
        refused = receive(ws, "error")
        assert refused["leader_url"] == "http://127.0.0.1:6768"
        assert until_closed(ws) == 4503
    assert log.machine.workers == {}


def test_a_bad_hello_is_refused_before_anything_is_committed(
    app: tuple[TestClient, MemoryLog],
) -> None:
    client, log = app
    with client.websocket_connect(SESSION) as ws:
        ws.send_bytes(wire.pack({"t": "hello", "worker_id": "w1", "slots": -1}))
        assert "slots" in receive(ws, "error")["detail"]
        assert until_closed(ws) == 4400
    assert log.entries == []


EVENTS = "ws://127.0.0.1:6767/api/v1/events"


def test_a_bad_subscription_is_closed_with_its_problem(app: tuple[TestClient, MemoryLog]) -> None:
    client, _ = app
    with client.websocket_connect(f"{EVENTS}?kind=weather") as ws:
        frame = json.loads(ws.receive_text())
        assert frame["error"]["status"] == 422
        assert until_closed(ws) == 4400
