"""Finding 7, reports: a declared size is never allocated, and a report is accepted only from
the session that holds the attempt, with a status a worker may report.

Each test attacks a real master process through a raw worker session and checks that the
attack is refused with an error frame, that nothing was committed, and that the master is
healthy afterwards.
"""

from __future__ import annotations

import httpx
import msgpack

from agentflow import Client, wire
from tests.e2e.procs import Processes, live_workers, wait_until
from tests.security.workers_raw import (
    open_session,
    recv,
    recv_kind,
    report,
    rss_bytes,
    tree_bytes,
    until_closed,
)

MiB = 1 << 20


def _healthy(url: str) -> None:
    assert httpx.get(url + "/health", timeout=5).status_code == 200
    assert httpx.get(url + "/api/v1/workers", timeout=5).status_code == 200
    assert httpx.get(url + "/api/v1/tasks", timeout=5).status_code == 200


def test_a_declared_size_is_refused_not_allocated(procs: Processes) -> None:
    master, url = procs.master("m1")
    data_dir = procs.root / "m1-data"
    ws, welcome = open_session(url, "w-size")
    assert welcome["t"] == "welcome"
    rss_before, disk_before = rss_bytes(master.pid), tree_bytes(data_dir)
    # An output chunk whose data is an integer: the old decoder made bytes(380_000_000) of it
    # and committed them.
    attack = report(output=[["t-nope", 1, "stdout", 380_000_000]])
    assert len(attack) < 100
    ws.send(attack)
    frames, code = until_closed(ws)
    assert [f["t"] for f in frames] == ["error"]
    assert "binary" in frames[0]["detail"]
    assert code == 4400
    # One array declaring more items than a frame may hold: refused before it is built.
    ws, welcome = open_session(url, "w-size", secret=welcome["secret"])
    ws.send(msgpack.packb({"t": "heartbeat", "running": [{}] * (2 * wire.MAX_FRAME_ENTRIES)}))
    frames, code = until_closed(ws)
    assert [f["t"] for f in frames] == ["error"] and code == 4400
    assert "max_array_len" in frames[0]["detail"]
    # Empty maps spread over arrays that each fit: refused by the frame's entry budget.
    ws, welcome = open_session(url, "w-size", secret=welcome["secret"])
    spread = [[{}] * (wire.MAX_FRAME_ENTRIES // 3) for _ in range(4)]
    ws.send(msgpack.packb({"t": "heartbeat", "running": spread}))
    frames, code = until_closed(ws)
    assert [f["t"] for f in frames] == ["error"] and code == 4400
    assert "entries" in frames[0]["detail"]
    _healthy(url)
    assert rss_bytes(master.pid) - rss_before < 64 * MiB
    assert tree_bytes(data_dir) - disk_before < 4 * MiB


def test_a_report_from_a_session_that_does_not_hold_the_attempt_is_refused(
    procs: Processes,
) -> None:
    _, url = procs.master("m1")
    ws, welcome = open_session(url, "w-raw")
    with Client(url) as client:
        mine = client.submit("true")
        assign = recv_kind(ws, "assign")
        assert assign["task_id"] == mine.id
        token = assign["token"]
        # A bogus status from the holder itself: a protocol violation, nothing committed.
        ws.send(report(outcomes=[{"task_id": mine.id, "token": token, "status": "bogus"}]))
        frames, code = until_closed(ws)
        assert [f["t"] for f in frames] == ["error"] and code == 4400
        assert "status" in frames[0]["detail"]
        assert client.get(mine.id).status == "assigned"

        # A real worker runs another task.
        procs.worker("w1", url)
        wait_until(lambda: live_workers(url) == 1, what="w1 registered")
        theirs = client.submit("sleep 2; echo theirs")
        wait_until(lambda: client.get(theirs.id).status == "running", what="theirs running")
        their_token = client.get(theirs.id).raw["fencing_token"]

        # The raw worker resumes (its secret) and reports the other worker's attempt.
        ws, welcome = open_session(
            url, "w-raw", secret=welcome["secret"], running=[[mine.id, token]]
        )
        assert welcome["t"] == "welcome"
        forged = {"task_id": theirs.id, "token": their_token, "status": "completed"}
        ws.send(
            report(
                1,
                started=[[theirs.id, their_token]],
                output=[[theirs.id, their_token, "stdout", b"forged\n"]],
                outcomes=[forged],
            )
        )
        refused = recv(ws)
        assert refused is not None and refused["t"] == "error" and refused["seq"] == 1
        assert "not held" in refused["detail"]
        # A token its own task never had: refused the same way.
        ws.send(report(2, outcomes=[{"task_id": mine.id, "token": token + 1, "status": "failed"}]))
        refused = recv(ws)
        assert refused is not None and refused["t"] == "error" and refused["seq"] == 2
        assert client.get(theirs.id).status == "running"
        assert client.get(mine.id).status == "assigned"

        # Its own attempt, with a valid status: accepted, still the first attempt.
        ws.send(report(3, outcomes=[{"task_id": mine.id, "token": token, "status": "completed"}]))
        assert recv_kind(ws, "ack")["seq"] == 3
        done = client.wait(mine.id, timeout_s=10)
        assert done.status == "completed" and done.attempts == 1

        theirs_done = client.wait(theirs.id, timeout_s=30)
        assert theirs_done.ok and theirs_done.attempts == 1 and theirs_done.worker_id == "w1"
        assert client.output(theirs.id)["stdout"] == "theirs\n"
    ws.close()
    _healthy(url)
