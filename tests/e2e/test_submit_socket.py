"""``WS /api/v1/submit``: submits over one socket, answered once durable, bounded like HTTP.

Real master processes: an answered frame survives ``kill -9``; a retried idempotency key
answers the first task; every bad frame is refused with an error frame (or a close, for a
frame that is not JSON text) and commits nothing; the socket takes tokens and the browser
guard as any route; the SDK submits over it from its second submit on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from agentflow import Client
from agentflow.errors import ValidationError
from tests.e2e.procs import Processes

TIMEOUT_S = 20.0


def _ws(url: str, **headers: str) -> ClientConnection:
    ws_url = "ws" + url.removeprefix("http") + "/api/v1/submit"
    return connect(ws_url, additional_headers=headers, open_timeout=TIMEOUT_S)


def _call(ws: ClientConnection, frame: dict[str, Any] | str) -> dict[str, Any]:
    ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    answer: dict[str, Any] = json.loads(ws.recv(timeout=TIMEOUT_S))
    return answer


def _task_ids(url: str, **headers: str) -> set[str]:
    page = httpx.get(url + "/api/v1/tasks", params={"limit": 1000}, headers=headers).json()
    return {t["id"] for t in page["tasks"]}


def test_an_answered_submit_survives_kill9_and_a_retry_makes_no_second_task(
    procs: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    master, url = procs.master("m1", None, data_dir=data)
    port = int(url.rsplit(":", 1)[1])
    one = {"command": "echo one", "idempotency_key": "key-one"}
    batch = {"tasks": [{"command": f"echo {i}", "idempotency_key": f"b{i}"} for i in range(300)]}
    with _ws(url) as ws:
        first = _call(ws, {"ref": 1, "op": "task", "body": one})
        again = _call(ws, {"ref": "two", "op": "task", "body": one})
        many = _call(ws, {"ref": 3, "op": "batch", "body": batch})
    assert (first["ref"], first["status"], first["body"]["created"]) == (1, 201, True)
    assert (again["ref"], again["status"], again["body"]["created"]) == ("two", 200, False)
    assert again["body"]["id"] == first["body"]["id"]
    assert many["status"] == 201 and many["body"]["count"] == 300
    master.kill9()  # right after the answers: each was on disk before it was sent
    _, url = procs.master("m1", port, data_dir=data)
    batch_ids = [t["id"] for t in many["body"]["tasks"]]
    assert _task_ids(url) == {first["body"]["id"], *batch_ids}
    with _ws(url) as ws:  # the keys are durable too: a retry after the restart finds them
        retried = _call(ws, {"ref": 4, "op": "batch", "body": batch})
    assert [t["id"] for t in retried["body"]["tasks"]] == batch_ids
    assert not any(t["created"] for t in retried["body"]["tasks"])


BAD_FRAMES: list[tuple[str, int]] = [
    ('{"ref": 1, "op": "task", "body": {"command": "true", "timeout_s": NaN}}', 422),
    ('{"ref": 1, "op": "task", "body": {"command": "true", "max_retries": 1e999}}', 422),
    (json.dumps({"ref": 1, "op": "task", "body": {"command": "true", "x": 1 << 64}}), 422),
    (
        json.dumps({"ref": 1, "op": "task", "body": {"command": "t", "labels": {"a": "\ud800"}}}),
        422,
    ),
    (json.dumps({"ref": 1, "op": "task", "body": {"args": [[[[]]]] * 1, "x": [[0]] * 2}}), 422),
    ('{"ref": 1, "op": "task", "body": {"kwargs": ' + "[" * 70 + "]" * 70 + "}}", 422),
    (json.dumps({"ref": 1, "op": "task", "body": {"command": "true", "colour": "red"}}), 422),
    (json.dumps({"ref": 1, "op": "task", "body": {"command": "true", "priority": "now"}}), 422),
    (json.dumps({"ref": 1, "op": "task", "body": {"command": "true", "max_retries": "5"}}), 422),
    (json.dumps({"ref": 1, "op": "task", "body": {}}), 422),
    (json.dumps({"ref": 1, "op": "launch", "body": {"command": "true"}}), 422),
    (json.dumps({"ref": 1, "op": "task", "body": {"command": "true"}, "extra": 1}), 422),
    (json.dumps({"ref": 1, "op": "batch", "body": {"tasks": []}}), 422),
    (json.dumps({"ref": 1, "op": "batch", "body": {"tasks": [{"command": "t"}] * 6}}), 413),
    (json.dumps({"ref": 1, "op": "task", "body": {"command": "x" * 70_000}}), 413),
]


def test_bad_frames_are_refused_with_an_error_frame_and_commit_nothing(
    procs: Processes,
) -> None:
    _, url = procs.master("m1", None, "--max-batch-tasks", "5", "--max-request-bytes", "64KiB")
    with _ws(url) as ws:
        for text, status in BAD_FRAMES:
            answer = _call(ws, text)
            assert answer["ref"] == 1, text
            assert answer["error"]["status"] == status, (text, answer)
        good = _call(ws, {"ref": 9, "op": "task", "body": {"command": "true"}})  # still open
        assert good["status"] == 201
    assert _task_ids(url) == {good["body"]["id"]}
    for frame, code in (("{not json", 1007), (b"\x00binary", 1003), ("[1, 2]", 1007)):
        with _ws(url) as ws:
            ws.send(frame)
            error = json.loads(ws.recv(timeout=TIMEOUT_S))
            assert error["error"]["status"] == 400
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=TIMEOUT_S)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    assert _task_ids(url) == {good["body"]["id"]}


def test_the_socket_takes_tokens_and_refuses_browsers(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--api-token", "s3cret")
    bearer = {"Authorization": "Bearer s3cret"}
    for headers in ({}, {"Authorization": "Bearer nope"}):
        with pytest.raises((InvalidStatus, ConnectionClosed)), _ws(url, **headers) as ws:
            _call(ws, {"ref": 1, "op": "task", "body": {"command": "true"}})
    with (
        pytest.raises((InvalidStatus, ConnectionClosed)),
        _ws(url, Origin="https://evil.example", **bearer) as ws,
    ):
        _call(ws, {"ref": 1, "op": "task", "body": {"command": "true"}})
    assert _task_ids(url, **bearer) == set()
    with _ws(url, **bearer) as ws:
        assert _call(ws, {"ref": 1, "op": "task", "body": {"command": "true"}})["status"] == 201
    assert len(_task_ids(url, **bearer)) == 1


def test_the_sdk_submits_over_the_socket_from_its_second_submit(procs: Processes) -> None:
    _, url = procs.master("m1", None)
    with Client(url) as client:
        first = client.submit("echo first")
        assert client._submit_socket is None  # a one-off submit opens no socket
        second = client.submit("echo second", priority="high")
        assert client.submit_socket.connected
        ids = client.submit_many({"command": f"echo {i}"} for i in range(1500))
        assert second.priority == "high" and len(set(ids)) == 1500
        with pytest.raises(ValidationError, match="priority"):  # refused alike, typed alike
            client.submit("true", priority="soon")
        assert client.get(first.id).title == "echo first"
        assert client.get(ids[-1]).status == "queued"
    assert httpx.get(url + "/api/v1/queue/stats").json()["totals"]["submitted"] == 1502
