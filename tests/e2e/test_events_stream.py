"""`WS /api/v1/events` against a real master and worker: filters, a resume that gets exactly
what was missed, a resume from before the ring told to re-read state, tokens, a slow consumer
closed with 4429, and `agentflow events`."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from agentflow.client import Client
from tests.e2e.procs import Processes, wait_until
from tests.e2e.test_cli import CLI

TOKEN = "events-admin-token"
RING = 300
QUEUE_MAX = 150


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    processes = Processes(tmp_path_factory.mktemp("events"))
    try:
        _, master_url = processes.master(
            "m1",
            None,
            "--api-token",
            TOKEN,
            "--event-ring",
            str(RING),
            "--event-queue-max",
            str(QUEUE_MAX),
        )
        processes.worker("w1", master_url, "--api-token", TOKEN, "--slots", "2")
        wait_until(lambda: _live(master_url) == 1, what="the worker to register")
        yield master_url
    finally:
        processes.close()


def _live(url: str) -> int:
    with Client(url, token=TOKEN) as client:
        return sum(1 for w in client.workers() if w["state"] in ("active", "busy"))


@pytest.fixture
def client(url: str) -> Iterator[Client]:
    with Client(url, token=TOKEN) as c:
        yield c


def socket(url: str, query: str = "", token: str | None = TOKEN) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws_url = "ws" + url.removeprefix("http") + "/api/v1/events" + query
    return connect(ws_url, additional_headers=headers, open_timeout=10)


def read_until_subscribed(ws: ClientConnection) -> tuple[list[dict[str, Any]], int]:
    """The events sent before the ``subscribed`` frame, and the last index seen."""
    events: list[dict[str, Any]] = []
    while True:
        frame = json.loads(ws.recv(timeout=10))
        assert "error" not in frame, frame
        events += frame.get("events", [])
        if frame.get("subscribed"):
            return events, frame["index"]


def read_events(
    ws: ClientConnection, until: Any, timeout_s: float = 20.0
) -> tuple[list[dict[str, Any]], int]:
    """Events until ``until(events)`` holds (within ``timeout_s``), and the index reached."""
    events: list[dict[str, Any]] = []
    index = -1
    while not until(events):
        frame = json.loads(ws.recv(timeout=timeout_s))
        assert "error" not in frame, frame
        events += frame.get("events", [])
        index = frame.get("index", index)
    return events, index


def ended(*task_ids: str) -> Any:
    def check(events: list[dict[str, Any]]) -> bool:
        done = {e["task_id"] for e in events if e.get("status") == "completed"}
        return set(task_ids) <= done

    return check


def test_filters_take_only_the_named_tasks_and_kinds(url: str, client: Client) -> None:
    a, b, other = (client.submit("true").id for _ in range(3))
    client.wait_many([a, b, other], timeout_s=30)
    with socket(url, f"?task_id={a}&task_id={b}&kind=task&replay=true") as ws:
        events, _ = read_until_subscribed(ws)
    assert {e["task_id"] for e in events} == {a, b}
    assert {e["kind"] for e in events} == {"task"}
    for task_id in (a, b):
        statuses = [e["status"] for e in events if e["task_id"] == task_id]
        assert statuses[0] == "queued" and statuses[-1] == "completed"
        assert statuses.index("running") < statuses.index("completed")
    indexes = [e["index"] for e in events]
    assert indexes == sorted(indexes)  # log order
    last = next(e for e in reversed(events) if e["task_id"] == a)
    assert last["exit_code"] == 0 and "result" in last  # an end carries its outcome

    with socket(url) as ws:  # the subscription as a first frame: ends of workflows only
        ws.send(json.dumps({"kinds": ["workflow"], "ends_only": True}))
        read_until_subscribed(ws)
        workflow = client.submit_workflow(
            {"name": "one", "tasks": [{"id": "x", "command": "true"}]}
        )
        events, _ = read_events(ws, lambda es: len(es) >= 1)
    assert events == [
        {
            "index": events[0]["index"],
            "kind": "workflow",
            "workflow_id": workflow["id"],
            "status": "completed",
        }
    ]


def test_a_resume_from_an_index_gets_exactly_the_missed_events(url: str, client: Client) -> None:
    with socket(url, "?kind=task") as steady:
        read_until_subscribed(steady)
        with socket(url, "?kind=task") as dropped:
            read_until_subscribed(dropped)
            first = client.submit("true").id
            _, index = read_events(dropped, ended(first))
        # Dropped after index: what applies meanwhile is missed, then asked for again.
        later = [client.submit("true").id for _ in range(3)]
        seen, _ = read_events(steady, ended(first, *later))
        with socket(url, f"?kind=task&from_index={index}") as resumed:
            missed, _ = read_until_subscribed(resumed)
    expected = [e for e in seen if e["index"] > index]
    assert missed == expected
    assert {e["task_id"] for e in missed} >= set(later)
    with socket(url, "?kind=task&from_index=999999999") as ahead:  # not applied here yet
        problem = json.loads(ahead.recv(timeout=10))["error"]
        with pytest.raises(ConnectionClosed) as closed:
            ahead.recv(timeout=10)
    assert problem["status"] == 503 and "resume on another master" in problem["detail"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4503


def _move_the_ring(url: str, client: Client) -> list[str]:
    """Tasks enough that the ring no longer holds the events of index 1."""
    ids = client.submit_many([{"command": "true"}] * (RING // 2))
    client.wait_many(ids, timeout_s=60)  # several events each
    with socket(url) as ws:
        ws.send("{}")
        frame: dict[str, Any] = {}
        while not frame.get("subscribed"):
            frame = json.loads(ws.recv(timeout=10))
    assert frame["floor"] > 1
    return ids


def test_a_resume_from_before_the_ring_is_told_to_reread_state(url: str, client: Client) -> None:
    ids = _move_the_ring(url, client)
    with socket(url, "?from_index=1") as ws:
        frame = json.loads(ws.recv(timeout=10))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert frame["error"]["code"] == "events-lost" and frame["error"]["status"] == 410
    assert "re-read the state" in frame["error"]["detail"]
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410
    assert client.gather(ids[:5], timeout_s=30) == [None] * 5  # the SDK reads current state


def test_tokens_origins_and_bad_subscriptions_are_refused_read_only_may_follow(
    url: str, client: Client
) -> None:
    for token in (None, "wrong", client.create_token("worker")["token"]):
        with pytest.raises(InvalidStatus) as refused, socket(url, "?kind=task", token=token):
            pass
        assert refused.value.response.status_code == 403
    foreign = "ws" + url.removeprefix("http") + "/api/v1/events?kind=task"
    headers = {"Authorization": f"Bearer {TOKEN}", "Origin": "https://evil.example"}
    with pytest.raises(InvalidStatus) as refused, connect(foreign, additional_headers=headers):
        pass  # a browser page of another site: refused before the token is even looked at
    assert refused.value.response.status_code == 403
    for bad in ("?kind=everything", "?from_index=-1", "?task_id=a&bogus=1"):
        with socket(url, bad) as ws:
            problem = json.loads(ws.recv(timeout=10))["error"]
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert problem["status"] == 422 and closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4400
    client.wait_many([client.submit("true").id], timeout_s=30)
    read_only = client.create_token("read-only")["token"]
    with socket(url, "?kind=task&replay=true", token=read_only) as ws:
        events, _ = read_until_subscribed(ws)
    assert events and {e["kind"] for e in events} == {"task"}
    with Client(url, token=read_only) as reader:
        assert next(iter(reader.events(kinds=["task"], follow=False)), None) is not None


def test_a_slow_consumer_is_closed_with_4429_and_others_go_on(url: str, client: Client) -> None:
    with socket(url, "?kind=task") as slow:
        read_until_subscribed(slow)
        # More events in one entry than the socket may hold waiting (no worker takes them).
        client.submit_many([{"command": "true", "group": "nobody"}] * (QUEUE_MAX + 10))
        frames = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                frames.append(json.loads(slow.recv(timeout=10)))
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert frames[-1]["error"]["code"] == "overloaded"
    assert "resume from the last index" in frames[-1]["error"]["detail"]
    with socket(url, "?kind=task") as fine:
        read_until_subscribed(fine)
        task_id = client.submit("true").id
        read_events(fine, ended(task_id))


def _lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_cli_prints_one_line_per_event_and_follows(url: str, client: Client) -> None:
    task_id = client.submit("exit 3").id
    client.wait_many([task_id], timeout_s=30)
    common = ["--master-url", url, "--api-token", TOKEN]
    done = subprocess.run(
        [CLI, "events", "--task", task_id, *common],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[1:4] == ["task", task_id, "queued"]
    assert lines[-1].split()[1:4] == ["task", task_id, "failed"]
    assert "exit_code=3" in lines[-1]
    as_json = subprocess.run(
        [CLI, "events", "--task", task_id, "-o", "json", *common],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert [json.loads(line)["status"] for line in as_json.stdout.splitlines()][-1] == "failed"

    follow = subprocess.Popen(
        [CLI, "events", "--follow", "--kind", "workflow", *common],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out = _lines(follow)
        wf = client.submit_workflow({"name": "f", "tasks": [{"id": "x", "command": "true"}]})
        wait_until(
            lambda: f"workflow {wf['id']} completed" in out.get(timeout=20),
            timeout_s=30,
            what="the workflow's end printed",
        )
    finally:
        follow.terminate()
        follow.wait(timeout=10)
        for stream in (follow.stdout, follow.stderr):
            assert stream is not None
            stream.close()

    _move_the_ring(url, client)
    lost = subprocess.run(
        [CLI, "events", "--from-index", "1", *common],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert lost.returncode == 2
    assert lost.stderr.count("\n") == 1 and "no longer held" in lost.stderr


def test_an_idle_socket_hears_the_index_move_on(url: str, client: Client) -> None:
    with socket(url, "?task_id=t-never&kind=task") as ws:
        _, start = read_until_subscribed(ws)
        client.submit("true")  # applies entries this filter does not take
        frame = json.loads(ws.recv(timeout=20))
    assert frame["events"] == [] and frame["index"] > start  # a resume point kept fresh
