"""Finding 6: non-finite and oversized numbers were committed and then broke every read, and
on the lock socket such a request was never answered. Each is now refused at the boundary (4xx,
or an error frame that answers its ``ref``), nothing is committed, and reads keep answering.

And the first bullet of finding 8: a binary frame on an agent stream killed its reader silently
while the keep-alive renewed the agent forever."""

from __future__ import annotations

import json
from functools import partial

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.procs import wait_until
from tests.security._http import assert_reads_answer, http, master, task_count

__all__ = ["master"]

pytestmark = pytest.mark.slow  # real master processes

BIG = str(1 << 64)  # one past what the log's 64-bit integers carry
BAD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999", BIG, "-" + BIG]
JSON = {"Content-Type": "application/json"}


def _post(url: str, path: str, text: str) -> httpx.Response:
    return http.post(url + path, content=text.encode(), headers=JSON, timeout=10)


@pytest.mark.parametrize(
    "body",
    [
        '{"command": "true", "resources": {"licence": %s}}',
        '{"command": "true", "resources": {"cpu": %s}}',
        '{"function": "os:getcwd", "args": [%s]}',
        '{"function": "os:getcwd", "kwargs": {"x": {"deep": [%s]}}}',
        '{"command": "true", "timeout_s": %s}',
    ],
)
def test_a_task_with_a_bad_number_is_refused(master: str, body: str) -> None:
    before = task_count(master)
    for number in BAD_NUMBERS:
        answer = _post(master, "/api/v1/tasks", body % number)
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    assert task_count(master) == before
    assert_reads_answer(master)


def test_a_negative_custom_resource_is_refused(master: str) -> None:
    before = task_count(master)
    answer = _post(master, "/api/v1/tasks", '{"command": "true", "resources": {"licence": -1}}')
    assert answer.status_code == 422
    assert task_count(master) == before


def _history(url: str) -> int:
    return int(http.get(url + "/api/v1/messages", timeout=10).json()["count"])


def test_a_message_or_lock_or_ack_with_a_bad_number_is_refused(master: str) -> None:
    assert http.post(master + "/api/v1/agents/victim/connect", json={}).status_code == 200
    before = _history(master)
    for path, body, number in [
        (path, body, number)
        for number in BAD_NUMBERS
        for path, body in [
            ("/api/v1/messages", '{"to": "victim", "type": "t", "content": {"x": %s}}'),
            (
                "/api/v1/messages/batch",
                '{"messages": [{"to": "victim", "type": "t", "content": %s}]}',
            ),
            ("/api/v1/locks/l1/acquire", '{"session": "s", "metadata": {"x": %s}}'),
            ("/api/v1/agents/victim/ack", '{"cursor": %s}'),
        ]
    ]:
        answer = _post(master, path, body % number)
        assert answer.status_code == 422, (path, answer.text)
    assert _history(master) == before
    assert http.get(master + "/api/v1/locks/l1").status_code == 404
    assert_reads_answer(master)


def test_deep_nesting_and_lone_surrogates_are_refused(master: str) -> None:
    before = task_count(master)
    deep = '{"function": "os:getcwd", "args": [' + "[" * 5000 + "]" * 5000 + "]}"
    assert _post(master, "/api/v1/tasks", deep).status_code == 422
    surrogate = '{"command": "true", "title": "\\ud800"}'
    assert _post(master, "/api/v1/tasks", surrogate).status_code == 422
    assert _post(master, "/api/v1/tasks", '{"command": ').status_code == 400
    assert task_count(master) == before
    assert_reads_answer(master)


def _ws(url: str, path: str) -> ClientConnection:
    return connect(url.replace("http://", "ws://") + path, open_timeout=5)


def _answer(ws: ClientConnection) -> dict[str, object]:
    frame = json.loads(ws.recv(timeout=10))
    assert isinstance(frame, dict)
    return frame


@pytest.mark.parametrize("number", BAD_NUMBERS)
def test_the_lock_socket_answers_a_bad_frame_by_its_ref(master: str, number: str) -> None:
    with _ws(master, "/api/v1/locks") as ws:
        ws.send(
            '{"ref": "r1", "op": "acquire", "name": "l2", "session": "s", "metadata": '
            '{"x": %s}}'.replace("%s", number)
        )
        answer = _answer(ws)
        assert answer["ref"] == "r1"
        assert isinstance(answer["error"], dict) and answer["error"]["status"] == 422
        ws.send(
            '{"ref": "r2", "op": "acquire", "name": "l2", "session": "s", "ttl_s": %s}'.replace(
                "%s", number
            )
        )
        assert _answer(ws)["ref"] == "r2"
        ws.send(
            '{"ref": "r3", "op": "release", "name": "l2", "session": "s", "token": %s}'.replace(
                "%s", number
            )
        )
        assert _answer(ws)["ref"] == "r3"
        ws.send(json.dumps({"ref": "ok", "op": "acquire", "name": "l3" + number, "session": "s"}))
        assert "grant" in _answer(ws)  # the socket goes on
    assert http.get(master + "/api/v1/locks/l2").status_code == 404
    assert_reads_answer(master)


def test_a_binary_frame_on_the_lock_socket_closes_it_with_1003(master: str) -> None:
    with _ws(master, "/api/v1/locks") as ws:
        ws.send(b"\x00\x01")
        assert "error" in _answer(ws)
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003


@pytest.mark.parametrize("number", BAD_NUMBERS)
def test_the_agent_stream_refuses_a_bad_send_or_ack(master: str, number: str) -> None:
    before = _history(master)
    with _ws(master, "/api/v1/agents/streamer/stream?push=false") as ws:
        ws.send(
            '{"ref": 7, "send": {"to": "victim", "type": "t", "content": [%s]}}'.replace(
                "%s", number
            )
        )
        answer = _answer(ws)
        assert answer["ref"] == 7 and "error" in answer
        ws.send('{"ack": %s}'.replace("%s", number))
        assert "error" in _answer(ws)
        ws.send(json.dumps({"ref": 8, "send": {"to": "victim", "type": "t", "content": 1}}))
        assert _answer(ws)["ref"] == 8  # the socket goes on
    assert _history(master) == before + 1
    assert_reads_answer(master)


def _lapsed(url: str, agent: str) -> bool:
    return not _live(url, agent)


def _live(url: str, agent: str) -> bool:
    return bool(http.get(f"{url}/api/v1/agents/{agent}", timeout=10).json()["live"])


def test_a_binary_or_undecodable_frame_ends_the_agent_stream(master: str) -> None:
    agents: dict[str, bytes | str] = {"bin-1003": b"\x93\x01\x02", "bin-1007": "[1, 2"}
    for agent, frame in agents.items():
        with _ws(master, f"/api/v1/agents/{agent}/stream") as ws:
            assert _live(master, agent)
            ws.send(frame)
            assert "error" in _answer(ws)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == int(agent.removeprefix("bin-"))
    # The keep-alive stopped with the reader: each session lapses after its TTL (10 s).
    for agent in agents:
        wait_until(partial(_lapsed, master, agent), 25.0, f"{agent}'s session to lapse")
