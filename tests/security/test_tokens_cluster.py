"""Role tokens in a 3-master cluster (issue 12): made through any master, known to every
master at once (a follower catches up before refusing), revoked everywhere, and the replicas'
states stay identical."""

from __future__ import annotations

from typing import Any

import httpx

from agentflow import Client
from tests.e2e.procs import Cluster, Processes, wait_until

ADMIN = "admin-" + "c" * 24


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _leader(cluster: Cluster) -> str:
    """The leader every master names (read from /health, which needs no token)."""
    found: list[str] = []

    def agreed() -> bool:
        try:
            views = [
                httpx.get(m.url + "/health", timeout=2).json() for m in cluster.masters.values()
            ]
        except httpx.HTTPError:
            return False
        leaders = {v["leader_id"] for v in views}
        found[:] = list(leaders)
        return len(leaders) == 1 and None not in leaders

    wait_until(agreed, 30, "one leader")
    return found[0]


def _digests(cluster: Cluster) -> set[tuple[int, str]]:
    views: list[dict[str, Any]] = [
        httpx.get(m.url + "/api/v1/cluster?digest=true", headers=_as(ADMIN), timeout=5).json()
        for m in cluster.masters.values()
    ]
    return {(v["state_applied_index"], v["state_digest"]) for v in views}


def test_tokens_hold_on_every_master(procs: Processes) -> None:
    cluster = procs.cluster(3, "--api-token", ADMIN)
    leader = _leader(cluster)
    first, second = (n for n in cluster.masters if n != leader)
    with Client(cluster.url(first), token=ADMIN) as admin:
        reader = admin.create_token("read-only")
    token = reader["token"]
    for name in cluster.masters:  # at once, on every master: no retry, no wait
        assert httpx.get(cluster.url(name) + "/api/v1/tasks", headers=_as(token)).status_code == 200
        refused = httpx.post(
            cluster.url(name) + "/api/v1/tasks", json={"command": "true"}, headers=_as(token)
        )
        assert refused.status_code == 403
    with Client(cluster.url(second), token=ADMIN) as admin:
        admin.revoke_token(reader["id"])
        assert admin.list_tokens() == []
    for name in cluster.masters:
        assert httpx.get(cluster.url(name) + "/api/v1/tasks", headers=_as(token)).status_code == 401
    wait_until(lambda: len(_digests(cluster)) == 1, 30, "the masters converged")
