"""Every master of a cluster keeps its own history of evicted tasks: each one answers for a task
evicted beyond ``--max-finished-tasks``, the survivors too after the leader is killed."""

from __future__ import annotations

import httpx

from agentflow import Client
from tests.e2e.procs import Processes, live_workers, wait_until


def _from_history(url: str, task_id: str) -> bool:
    answer = httpx.get(f"{url}/api/v1/tasks/{task_id}")
    return answer.status_code == 200 and answer.json().get("from_history") is True


def test_each_master_answers_from_its_own_history(procs: Processes) -> None:
    cluster = procs.cluster(3, "--max-finished-tasks", "1")
    leader = cluster.leader()
    procs.worker("w1", cluster.urls, "--slots", "1")
    wait_until(lambda: live_workers(cluster.url(leader)) == 1, what="worker registered")
    with Client(cluster.url(leader)) as client:
        ids = []
        for i in range(3):
            ids.append(client.submit(f"echo {i}").id)
            client.wait(ids[-1], timeout_s=20)
    for name in cluster.masters:
        url = cluster.url(name)
        wait_until(lambda u=url: _from_history(u, ids[1]), what=f"{name} reading its history")
    cluster.kill9(leader)
    survivor = cluster.leader(among=[n for n in cluster.masters if n != leader])
    assert _from_history(cluster.url(survivor), ids[0])
    listed = httpx.get(cluster.url(survivor) + "/api/v1/tasks", params={"history": "true"})
    assert [t["id"] for t in listed.json()["tasks"]] == [*reversed(ids)]
