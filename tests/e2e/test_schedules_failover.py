"""A schedule across a leader killed with SIGKILL right after one of its firings: three real
masters, ``every 1s`` with catchup ``all``. The new leader goes on from the last committed fire
time; afterwards the runs' idempotency keys (``schedule:<name>:<fire ms>``) form one unbroken
sequence of fire times, none twice, and all three masters (the killed one restarted) hold the
same state."""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from tests.e2e.procs import Cluster, Processes, wait_until

EVERY_MS = 1000
RUNS_AFTER_KILL = 3


def _schedule(cluster: Cluster, name: str) -> dict[str, Any] | None:
    """The schedule as master ``name`` has applied it, or None when it does not answer."""
    try:
        answer = httpx.get(
            cluster.url(name) + "/api/v1/schedules/tick?consistency=stale", timeout=2.0
        )
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _runs(cluster: Cluster, name: str) -> int:
    view = _schedule(cluster, name)
    return -1 if view is None else int(view["runs"])


def _run_keys(url: str) -> list[tuple[str, str]]:
    """(idempotency key, task id) of every task the schedule made, as ``url`` lists them."""
    answer = httpx.get(url + "/api/v1/tasks", params={"limit": 1000}, timeout=5.0)
    answer.raise_for_status()
    tasks = answer.json()["tasks"]
    return [
        (t["idempotency_key"], t["id"])
        for t in tasks
        if (t["idempotency_key"] or "").startswith("schedule:tick:")
    ]


def test_a_leader_killed_at_a_fire_time_neither_repeats_nor_skips_one(procs: Processes) -> None:
    # An election timeout of 2.5 s or more: the next fire times fall due with no leader, so
    # the new one has missed fire times to catch up on (catchup ``all``).
    cluster = procs.cluster(3, "--election-timeout", "2.5s")
    leader = cluster.leader()
    body = {
        "name": "tick",
        "every": "1s",
        "task": {"command": "true"},
        "overlap": "allow",  # no worker runs them: each run stays queued
        "catchup": "all",
    }
    made = httpx.post(cluster.url(leader) + "/api/v1/schedules", json=body, timeout=10.0)
    assert made.status_code == 201, made.text
    wait_until(lambda: _runs(cluster, leader) >= 2, 30, "two runs before the kill")
    # Kill it as soon as it has committed one more firing: right at a fire time, with the
    # next one due while no leader is there to fire it.
    before = _runs(cluster, leader)
    wait_until(lambda: _runs(cluster, leader) > before, 30, "a firing to kill the leader at")
    cluster.kill9(leader)
    survivors = [n for n in cluster.masters if n != leader]
    new_leader = cluster.leader(among=survivors)
    at_kill = _runs(cluster, new_leader)
    wait_until(
        lambda: _runs(cluster, new_leader) >= at_kill + RUNS_AFTER_KILL,
        60,
        f"{RUNS_AFTER_KILL} runs after the kill",
    )
    httpx.patch(
        cluster.url(new_leader) + "/api/v1/schedules/tick", json={"paused": True}, timeout=10.0
    ).raise_for_status()
    cluster.start(leader)  # the killed master replays the firings it missed
    cluster.wait_converged()
    view = _schedule(cluster, new_leader)
    assert view is not None
    keys = _run_keys(cluster.url(new_leader))
    fires = sorted(int(key.rsplit(":", 1)[1]) for key, _ in keys)
    assert len({key for key, _ in keys}) == len(keys) == len({tid for _, tid in keys})
    assert len(fires) == view["runs"] and fires[-1] == view["last_run_ms"]
    gaps = {b - a for a, b in itertools.pairwise(fires)}
    assert gaps == {EVERY_MS}, f"fire times not one unbroken sequence: {fires}"
