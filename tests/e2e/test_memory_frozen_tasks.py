"""Finished tasks kept as compact rows (``--live-finished-tasks``) read back over the API like
any other, listed and filtered alike, and survive a restart from the snapshot."""

from __future__ import annotations

import httpx

from agentflow import Client
from tests.e2e.procs import Processes, live_workers, wait_until

FIELDS = ("id", "title", "status", "exit_code", "group", "priority", "attempt_history")


def _serves_reads(url: str) -> bool:
    return httpx.get(url + "/api/v1/tasks").status_code == 200


def _snapshot(url: str) -> dict[str, object]:
    answer = httpx.get(url + "/api/v1/tasks", params={"limit": 100})
    assert answer.status_code == 200, answer.text
    tasks = answer.json()["tasks"]
    return {t["id"]: {k: t[k] for k in FIELDS} for t in tasks}


def test_frozen_tasks_read_list_and_restart_alike(procs: Processes) -> None:
    master, url = procs.master("m1", None, "--live-finished-tasks", "1", "--snapshot-every", "5")
    port = int(url.rsplit(":", 1)[1])
    procs.worker("w1", url, "--slots", "2")
    wait_until(lambda: live_workers(url) == 1, what="worker registered")
    with Client(url) as client:
        ids = [
            client.submit(f"echo out{i}", title=f"t{i}", priority=("low", "high")[i % 2]).id
            for i in range(4)
        ]
        failed = client.submit("exit 3", title="bad").id
        for task_id in [*ids, failed]:
            client.wait(task_id, timeout_s=20)
        before = {tid: client.get(tid).raw for tid in [*ids, failed]}
        assert [before[t]["status"] for t in ids] == ["completed"] * 4
        assert before[failed]["status"] == "failed" and before[failed]["exit_code"] == 3
        assert client.output(ids[0])["stdout"] == "out0\n"
    listed = _snapshot(url)
    assert set(listed) == {*ids, failed}
    only_failed = httpx.get(url + "/api/v1/tasks", params={"status": "failed"}).json()["tasks"]
    assert [t["id"] for t in only_failed] == [failed]
    master.terminate()
    procs.master("m1", port, "--live-finished-tasks", "1", data_dir=procs.root / "m1-data")
    wait_until(lambda: _serves_reads(url), what="the restarted master serving current reads")
    assert _snapshot(url) == listed
    with Client(url) as client:
        assert client.get(ids[1]).raw["priority"] == "high"
        assert client.output(ids[0])["stdout"] == "out0\n"
