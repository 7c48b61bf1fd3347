"""The storage host's fence, against the real process: a lower token is refused, an equal one
accepted, and every decision is on disk before its answer (and survives a kill -9)."""

from __future__ import annotations

from pathlib import Path

import httpx

from agentflow.testing.chaos.history import read_storage
from agentflow.testing.chaos.storage import StorageClient, StorageHost
from tests.chaos.work_hosts import start_storage
from tests.e2e.procs import Processes


def test_a_lower_token_is_refused_an_equal_one_accepted_and_streams_are_fenced_apart(
    procs: Processes, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    _, url = start_storage(procs, records)
    writes = [
        ("lock:a", "h1", 5, "x1"),
        ("lock:a", "h1", 5, "x2"),  # the same holder again, same token: accepted
        ("lock:a", "h0", 4, "stale"),  # an older holder after a newer one wrote: refused
        ("lock:b", "h0", 4, "other"),  # another stream has its own fence
        ("lock:a", "h2", 6, "y1"),
        ("lock:a", "h1", 5, "late"),
    ]
    with StorageClient(url) as storage:
        answers = []
        for stream, writer, token, event in writes:
            answers.append(storage.write(stream, writer, token, event))
            # fsync before the answer: the decision is already in the file
            on_disk = read_storage(records)[-1]
            assert (on_disk.writer, on_disk.event) == (writer, event)
        assert [a["accepted"] for a in answers] == [True, True, False, True, True, False]
        assert [a["highest"] for a in answers] == [5, 5, 5, 4, 6, 6]
        served = storage.records()
    assert served == read_storage(records)
    assert [(r.stream, r.writer, r.token, r.event, r.accepted) for r in served] == [
        (*w, a["accepted"]) for w, a in zip(writes, answers, strict=True)
    ]
    assert [r.at_ns for r in served] == sorted(r.at_ns for r in served)


def test_the_fence_survives_a_kill9_and_restart_on_the_same_file(
    procs: Processes, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    proc, url = start_storage(procs, records)
    port = int(url.rsplit(":", 1)[1])
    with StorageClient(url) as storage:
        assert storage.write("task:t1", "t1/2", 7, "start")["accepted"]
    proc.kill9()
    _, url = start_storage(procs, records, port=port)
    with StorageClient(url) as storage:
        assert storage.write("task:t1", "t1/1", 3, "end") == {"accepted": False, "highest": 7}
        assert [r.accepted for r in storage.records()] == [True, False]


def test_a_malformed_write_is_refused_and_not_recorded(procs: Processes, tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    _, url = start_storage(procs, records)
    bad = [{"stream": "s", "writer": "w", "token": "1", "event": "e"}, {"stream": "s"}, [1]]
    for body in bad:
        assert httpx.post(url + "/write", json=body, timeout=5).status_code == 422
    assert read_storage(records) == []


def test_the_host_without_http_decides_the_same_way(tmp_path: Path) -> None:
    host = StorageHost(tmp_path / "r.jsonl")
    try:
        decided = [host.write("s", "w", t, "e").accepted for t in (2, 1, 2, 3, 0)]
    finally:
        host.close()
    assert decided == [True, False, True, True, False]
