"""The event socket through a failover: three masters, the leader killed while the SDK
gathers 50 tasks over the socket it holds to that very leader. The socket resumes from the
index it reached on another master; every task's end arrives once, none is lost."""

from __future__ import annotations

import threading
from typing import Any

import httpx

from agentflow.client import Client
from tests.e2e.procs import Processes, wait_until

N_TASKS = 50


def _finished_on(url: str) -> int:
    """Tasks finished, as ``url`` (a follower) has applied them."""
    try:
        stats = httpx.get(url + "/api/v1/queue/stats?consistency=stale", timeout=2).json()
    except httpx.HTTPError:
        return 0
    return int(stats["totals"]["completed"])


def test_gather_over_fifty_tasks_survives_the_leader_killed(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    follower = next(n for n in cluster.masters if n != leader)
    urls = [cluster.url(leader)] + [cluster.url(n) for n in cluster.masters if n != leader]
    for name in ("w1", "w2"):
        procs.worker(name, cluster.urls, "--slots", "2", "--heartbeat-interval", "0.5s")
    with Client(urls, retry_for_s=30) as client, Client(urls, retry_for_s=30) as other:
        ids = client.submit_many([{"command": "sleep 0.2"}] * N_TASKS)
        seen: list[str] = []
        errors: list[BaseException] = []

        def completed_one_by_one() -> None:
            try:
                seen.extend(f.id for f in other.as_completed(ids, timeout_s=120))
            except BaseException as exc:  # reported by the test's thread
                errors.append(exc)

        watcher = threading.Thread(target=completed_one_by_one, daemon=True)
        watcher.start()

        def kill_when_under_way() -> None:
            wait_until(lambda: _finished_on(cluster.url(follower)) >= 10, 60, "10 ends")
            cluster.kill9(leader)

        killer = threading.Thread(target=kill_when_under_way, daemon=True)
        killer.start()
        values: list[Any] = client.gather(ids, timeout_s=120)
        killer.join(timeout=60)
        watcher.join(timeout=120)
    assert not killer.is_alive() and not cluster.masters[leader].alive()
    assert values == [None] * N_TASKS
    assert not errors, errors
    assert sorted(seen) == sorted(ids)  # each task's end once: none lost, none twice
    survivors = [n for n in cluster.masters if n != leader]
    new_leader = cluster.leader(among=survivors)
    still_follower = next(n for n in survivors if n != new_leader)
    with Client(cluster.url(still_follower)) as reader:  # a follower serves the stream too
        ends = list(reader.events(task_ids=ids, kinds=["task"], follow=False))
    assert {e["task_id"] for e in ends if e["status"] == "completed"} == set(ids)
