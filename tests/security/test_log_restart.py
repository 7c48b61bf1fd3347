"""Finding 2 against real processes: an undecodable committed entry no longer crash-loops.

The entry is written into raft.db of stopped masters, after everything they applied, with the
term of their last entry: at start it is replayed and committed with the new leader's first
entry. Before the fix the driver died on it (exit 70) at every start; now it is skipped,
recorded and counted, and the master serves.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import httpx
import pytest

from agentflow.state import encode_command
from agentflow.state.commands import NewTask, SubmitTasks
from agentflow.testing.ports import free_port
from tests.e2e.procs import CLUSTER_PATH, Proc, Processes, wait_until

GARBAGE = b"\xc1\xc1 not a command"

pytestmark = pytest.mark.slow  # real master processes


def _append_garbage(data_dir: Path, data: bytes = GARBAGE) -> int:
    """Append ``data`` as the next entry of the stopped master's log; its index."""
    conn = sqlite3.connect(data_dir / "raft.db")
    try:
        index, term = conn.execute(
            "SELECT idx, term FROM entries ORDER BY idx DESC LIMIT 1"
        ).fetchone()
        with conn:
            conn.execute(
                "INSERT INTO entries (idx, term, type, data) VALUES (?, ?, 0, ?)",
                (index + 1, term, data),
            )
    finally:
        conn.close()
    return int(index) + 1


def _rejected_total(proc: Proc, url: str) -> object:
    assert proc.alive(), f"the master exited with {proc.popen.returncode}"
    return _rejected(url)["total"]


def _rejected(url: str) -> dict[str, object]:
    view: dict[str, object] = httpx.get(url + CLUSTER_PATH, timeout=5).json()["rejected_entries"]
    return view


def _submit(url: str, title: str) -> httpx.Response:
    return httpx.post(
        url + "/api/v1/tasks", json={"title": title, "description": "echo hi"}, timeout=10
    )


def test_single_master_restarts_healthy_over_an_undecodable_entry(procs: Processes) -> None:
    data, raft_port = procs.root / "m1-data", free_port()
    proc, url = procs.master("m1", data_dir=data, raft_port=raft_port)
    port = int(url.rsplit(":", 1)[1])
    assert _submit(url, "before").status_code == 201
    proc.terminate()
    index = _append_garbage(data)

    proc, url = procs.master("m1", port, data_dir=data, raft_port=raft_port)
    wait_until(lambda: _rejected_total(proc, url) == 1, 10, "the entry recorded as rejected")
    (entry,) = _rejected(url)["last"]  # type: ignore[misc]
    assert entry["index"] == index
    assert "undecodable" in entry["reason"]
    assert _submit(url, "after").status_code == 201
    tasks = httpx.get(url + "/api/v1/tasks", timeout=5).json()["tasks"]
    assert {t["title"] for t in tasks} == {"before", "after"}
    assert "agentflow_rejected_entries_total 1.0" in httpx.get(url + "/metrics").text
    assert proc.alive()

    proc.terminate()  # and again: the record survives, nothing is re-rejected
    proc, url = procs.master("m1", port, data_dir=data, raft_port=raft_port)
    assert _rejected(url)["total"] == 1
    assert _submit(url, "again").status_code == 201


def test_a_master_whose_log_holds_a_nan_restarts_healthy(procs: Processes) -> None:
    """A value stored before the HTTP boundary refused non-finite numbers is replayed, not
    fatal: the command is valid, so it is applied (reading it back is the API's concern)."""
    data, raft_port = procs.root / "m1-data", free_port()
    proc, url = procs.master("m1", data_dir=data, raft_port=raft_port)
    port = int(url.rsplit(":", 1)[1])
    assert _submit(url, "before").status_code == 201
    proc.terminate()
    task = NewTask(
        id="t-nan", title="nan", description="", spec={"command": "true"}, resources={"x": math.nan}
    )
    _append_garbage(data, encode_command(SubmitTasks(now_ms=1, tasks=[task])))

    proc, url = procs.master("m1", port, data_dir=data, raft_port=raft_port)
    assert _submit(url, "after").status_code == 201
    metrics = httpx.get(url + "/metrics", timeout=5).text
    assert 'agentflow_tasks_events_total{event="submitted"} 3.0' in metrics
    assert _rejected_total(proc, url) == 0


def test_three_masters_skip_the_same_entry_and_agree(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    assert _submit(cluster.url(leader), "before").status_code == 201
    cluster.wait_converged()
    for name in cluster.masters:
        cluster.terminate(name)
    indexes = {_append_garbage(m.data_dir) for m in cluster.masters.values()}
    assert len(indexes) == 1  # the same log on every master, so the same index
    for name in cluster.masters:
        cluster.start(name)
    leader = cluster.leader()
    assert _submit(cluster.url(leader), "after").status_code == 201
    cluster.wait_converged()
    for name in cluster.masters:
        view = _rejected(cluster.url(name))
        assert view["total"] == 1
        assert [e["index"] for e in view["last"]] == list(indexes)  # type: ignore[attr-defined]
        assert cluster.masters[name].alive()
