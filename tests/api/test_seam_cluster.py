"""Cluster read routes, health and metrics in process; membership refused by a one-member log;
the same app over the real Raft log of a single master; and the log replayed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from agentflow.api.app import create_app
from agentflow.api.service import MasterService, state_machine
from agentflow.cluster.memlog import MemoryLog
from agentflow.config import MasterConfig
from tests.api.conftest import BASE_URL, Master, ok, problem


async def test_status_digest_health_and_metrics(master: Master) -> None:
    ok(await master.client.post("/api/v1/tasks", json={"command": "true"}), 201)
    status = ok(await master.client.get("/api/v1/cluster"))
    assert status["role"] == "leader" and status["leader_id"] == master.log.node_id
    assert status["applied_index"] == 1 and [m["link"] for m in status["members"]] == ["self"]
    digest = ok(await master.client.get("/api/v1/cluster", params={"digest": "true"}))
    assert digest["state_digest"] == master.machine.digest()
    assert digest["state_applied_index"] == 1
    health = ok(await master.client.get("/health"))
    assert health["role"] == "leader" and health["applied_index"] == 1
    metrics = await master.client.get("/metrics")
    assert metrics.status_code == 200 and "agentflow_applied_index 1.0" in metrics.text


async def test_membership_changes_are_refused_by_a_one_member_log(master: Master) -> None:
    body = {"id": "m2", "raft_address": "127.0.0.1:7001", "api_url": "http://127.0.0.1:6768"}
    problem(await master.client.post("/api/v1/cluster/members", json=body), 409, "conflict")
    bad = body | {"raft_address": "no-port"}
    problem(await master.client.post("/api/v1/cluster/members", json=bad), 422)
    problem(await master.client.delete("/api/v1/cluster/members/m9"), 404)
    to = {"to": "m2"}
    problem(await master.client.post("/api/v1/cluster/transfer-leadership", json=to), 422)
    problem(await master.client.post("/api/v1/cluster/transfer-leadership", json={}), 404)


async def test_a_follower_names_its_leader(master: Master) -> None:
    master.log.set_leader("m2", "http://127.0.0.1:1")
    status = ok(await master.client.get("/api/v1/cluster"))
    assert status["role"] == "follower" and status["leader_url"] == "http://127.0.0.1:1"
    problem(await master.client.get("/api/v1/cluster/members/m1"), 405)
    master.log.set_leader("m2", None)  # known, but not where: nowhere to forward a write
    body = {"to": master.log.node_id}
    answer = await master.client.post("/api/v1/cluster/transfer-leadership", json=body)
    assert problem(answer, 503, "not-leader")["leader_id"] == "m2"
    assert master.service.scheduler.lost_in_ms("w1") > 0  # re-armed when it stepped down


async def test_the_log_replays_to_the_same_state(master: Master) -> None:
    master.register_worker("w1")
    for n in range(3):
        ok(await master.client.post("/api/v1/tasks", json={"command": f"echo {n}"}), 201)
    ok(await master.client.post("/api/v1/locks/l/acquire", json={"session": "s"}))
    ok(await master.client.post("/api/v1/messages", json={"to": "*", "type": "Notification"}), 201)
    replica = state_machine(master.service.config)
    for index, data in enumerate(master.log.entries, start=1):
        replica.apply_entry(index, data)
    assert replica.applied_index == master.machine.applied_index
    assert replica.digest() == master.machine.digest()


async def test_the_same_app_over_the_raft_log_of_one_master(tmp_path: Path) -> None:
    """The real log, in process: the routes answer as over the in-memory log."""
    svc = MasterService(MasterConfig(data_dir=tmp_path))
    leading = asyncio.Event()
    svc.log.on_leadership(lambda is_leader: leading.set() if is_leader else None)
    app = create_app(svc)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            await asyncio.wait_for(leading.wait(), 30)  # a master of one elects itself
            created = ok(await client.post("/api/v1/tasks", json={"command": "true"}), 201)
            got = ok(await client.get(f"/api/v1/tasks/{created['id']}"))
            assert got["status"] == "queued"
            status = ok(await client.get("/api/v1/cluster"))
            health = ok(await client.get("/health"))
    assert status["role"] == "leader" and health["role"] == "leader"
    memory = MemoryLog(state_machine(svc.config)).status()
    assert memory.keys() == status.keys()
    assert memory["members"][0].keys() == status["members"][0].keys()
