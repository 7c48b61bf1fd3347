"""Finished tasks evicted beyond ``--max-finished-tasks`` still answer from the master's history
on disk: by id (get, wait, result, output), in a listing with ``history=true``, and after the
master restarts from a snapshot that no longer holds them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from agentflow import Client
from tests.e2e.procs import Processes, live_workers, wait_until

AGENTFLOW = str(Path(sys.executable).parent / "agentflow")


def _listed(url: str, **params: object) -> list[dict[str, object]]:
    answer = httpx.get(url + "/api/v1/tasks", params={"history": "true", **params})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    tasks: list[dict[str, object]] = body["tasks"]
    if body["next_cursor"] is not None:
        tasks += _listed(url, **{**params, "cursor": body["next_cursor"]})
    return tasks


def _check_evicted(url: str, ids: list[str], fn_id: str) -> None:
    assert httpx.get(url + "/api/v1/tasks", params={"cursor": ids[0]}).status_code == 422
    with Client(url) as client:
        info = client.get(ids[0])
        assert info.status == "completed" and info.raw["from_history"] is True
        assert client.wait(ids[1], timeout_s=5).raw["from_history"] is True
        assert client.result(fn_id, timeout_s=5) == 3
        assert client.output(ids[0])["output_evicted"] is True
        assert "from_history" not in client.get(ids[-1]).raw  # the newest are still in memory
        assert len(client.list(limit=10, history=True)) == 6
    listed = _listed(url, limit=2)
    assert [t["id"] for t in listed] == [*reversed(ids), fn_id]
    assert [t.get("from_history", False) for t in listed] == [False] * 2 + [True] * 4
    cli = [AGENTFLOW, "tasks", "--master-url", url, "--history", "--json", "--limit", "10"]
    done = subprocess.run(cli, check=True, capture_output=True, text=True, timeout=30)
    assert [t["id"] for t in json.loads(done.stdout)] == [*reversed(ids), fn_id]
    only_evicted = httpx.get(url + "/api/v1/tasks", params={"limit": 10}).json()["tasks"]
    assert len(only_evicted) == 2  # without history=true: memory alone


def test_evicted_tasks_answer_from_history_across_a_restart(procs: Processes) -> None:
    bound = ("--max-finished-tasks", "2", "--snapshot-every", "3")
    master, url = procs.master("m1", None, *bound)
    port = int(url.rsplit(":", 1)[1])
    procs.worker("w1", url, "--slots", "1")
    wait_until(lambda: live_workers(url) == 1, what="worker registered")
    with Client(url) as client:
        fn_id = client.submit(abs, -3).id
        client.wait(fn_id, timeout_s=20)
        ids = []
        for i in range(5):  # one at a time: they finish, and are evicted, in this order
            ids.append(client.submit(f"echo out{i}").id)
            client.wait(ids[-1], timeout_s=20)
    _check_evicted(url, ids, fn_id)
    master.terminate()
    procs.master("m1", port, *bound, data_dir=procs.root / "m1-data")
    wait_until(lambda: httpx.get(url + "/api/v1/tasks").status_code == 200, what="serving")
    _check_evicted(url, ids, fn_id)


def test_max_finished_tasks_is_validated(tmp_path: Path) -> None:
    done = subprocess.run(
        [AGENTFLOW, "master", "--data-dir", str(tmp_path), "--max-finished-tasks", "0"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert done.stderr.splitlines() == ["error: --max-finished-tasks must be at least 1"]
