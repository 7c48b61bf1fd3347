"""Finding 5 against real masters: one membership call can no longer remove quorum.

A new member joins as a learner and the leader promotes it once it has caught up; a voter that
is not a caught-up learner is refused (409) unless forced; addresses and URLs are checked
(422) before anything is proposed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentflow.testing.ports import free_port
from tests.e2e.procs import Cluster, Processes, wait_until

MEMBERS = "/api/v1/cluster/members"

pytestmark = pytest.mark.slow  # real master processes


def _roles(cluster: Cluster, name: str) -> dict[str, str]:
    status = cluster.status(name)
    assert status is not None, f"{name} does not answer"
    return {m["id"]: m["role"] for m in status["members"]}


def _dead_member(node_id: str, **more: Any) -> dict[str, Any]:
    """A member at addresses where nothing listens."""
    return {
        "id": node_id,
        "raft_address": f"127.0.0.1:{free_port()}",
        "api_url": f"http://127.0.0.1:{free_port()}",
        **more,
    }


def _commits(cluster: Cluster, title: str) -> None:
    """A task is accepted (committed) through whichever running master leads now."""
    leader = cluster.leader(among=[n for n, m in cluster.masters.items() if m.alive()])
    response = httpx.post(
        cluster.url(leader) + "/api/v1/tasks",
        json={"title": title, "description": "echo hi"},
        timeout=15,
    )
    assert response.status_code == 201, response.text


BAD = [
    {"raft_address": "127.0.0.1:0"},
    {"raft_address": "127.0.0.1:65536"},
    {"raft_address": ":7000"},
    {"raft_address": "no port"},
    {"raft_address": "bad host:7000"},
    {"api_url": "ftp://127.0.0.1:8080"},
    {"api_url": "http://"},
    {"api_url": "http://127.0.0.1:99999"},
    {"api_url": "127.0.0.1:8080"},
]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One 3-master cluster for the module (starting one is most of the cost); every test
    leaves it with a leader and without the members it added, except the last."""
    procs = Processes(tmp_path_factory.mktemp("membership"))
    try:
        cluster = procs.cluster(3)
        cluster.leader()
        yield cluster
    finally:
        procs.close()


def test_unknown_voter_is_refused_and_bad_addresses_are_422(cluster: Cluster) -> None:
    leader = cluster.leader()
    url = cluster.url(leader) + MEMBERS
    refused = httpx.post(url, json=_dead_member("ghost", voter=True), timeout=15)
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "force" in refused.json()["detail"]
    for bad in BAD:
        body = _dead_member("bad", voter=False) | bad
        response = httpx.post(url, json=body, timeout=15)
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert set(_roles(cluster, leader)) == {"m1", "m2", "m3"}  # nothing was proposed
    assert cluster.leader() == leader
    _commits(cluster, "after the refusals")
    cluster.wait_converged()


def test_learner_at_a_dead_address_never_blocks_and_is_removed(cluster: Cluster) -> None:
    leader = cluster.leader()
    added = httpx.post(cluster.url(leader) + MEMBERS, json=_dead_member("ghost"), timeout=15)
    assert added.status_code == 200, added.text
    assert _roles(cluster, leader)["ghost"] == "learner"
    for i in range(3):
        _commits(cluster, f"with a dead learner {i}")
    again = httpx.post(
        cluster.url(leader) + MEMBERS, json=_dead_member("ghost", voter=True), timeout=15
    )
    assert again.status_code == 409, again.text  # a learner that has not caught up stays one
    assert _roles(cluster, cluster.leader())["ghost"] == "learner"
    # The way back (README): remove it.
    leader = cluster.leader()
    removed = httpx.delete(cluster.url(leader) + f"{MEMBERS}/ghost", timeout=15)
    assert removed.status_code == 200, removed.text
    assert "ghost" not in _roles(cluster, leader)
    _commits(cluster, "after removing it")


def test_forced_voter_that_cost_the_quorum_has_the_documented_way_back(cluster: Cluster) -> None:
    """README: start a master at the forced voter's address with --join, then remove it."""
    leader = cluster.leader()
    ghost = cluster.add("ghost")
    body = {"id": "ghost", "raft_address": ghost.raft_address, "api_url": ghost.url}
    forced = httpx.post(
        cluster.url(leader) + MEMBERS, json=body | {"voter": True, "force": True}, timeout=15
    )
    assert forced.status_code == 200, forced.text
    assert _roles(cluster, leader)["ghost"] == "voter"
    _commits(cluster, "three of four voters")  # 3 of 4 is still a quorum
    follower = next(n for n in ("m1", "m2", "m3") if n != leader)
    cluster.kill9(follower)  # 2 of 4: no quorum until the ghost answers
    cluster.start("ghost", "--join")
    _commits(cluster, "with the ghost answering")
    leader = cluster.leader(among=[n for n in cluster.masters if n != follower])
    removed = httpx.delete(cluster.url(leader) + f"{MEMBERS}/ghost", timeout=15)
    assert removed.status_code == 200, removed.text
    cluster.kill9("ghost")
    del cluster.masters["ghost"]
    cluster.start(follower)
    _commits(cluster, "after removing it")


def test_a_joining_master_becomes_a_voter_once_caught_up(cluster: Cluster) -> None:
    leader = cluster.leader()
    for i in range(3):
        _commits(cluster, f"before m4 {i}")
    m4 = cluster.add("m4")
    cluster.start("m4", "--join")
    body = {"id": "m4", "raft_address": m4.raft_address, "api_url": m4.url}
    added = httpx.post(cluster.url(leader) + MEMBERS, json=body, timeout=15)
    assert added.status_code == 200, added.text
    assert _roles(cluster, leader)["m4"] in ("learner", "voter")
    wait_until(lambda: _roles(cluster, cluster.leader())["m4"] == "voter", 20, "m4 promoted")
    _commits(cluster, "with four voters")
    cluster.wait_converged()
