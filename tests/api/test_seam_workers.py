"""Worker routes in process (a worker's session is a WebSocket: its commands are applied
directly, as the session would commit them)."""

from __future__ import annotations

from tests.api.conftest import Master, ok, problem


async def test_list_and_read_workers(master: Master) -> None:
    assert ok(await master.client.get("/api/v1/workers"))["workers"] == []
    master.register_worker("w1", slots=2)
    listed = ok(await master.client.get("/api/v1/workers"))
    assert [(w["id"], w["slots"], w["free_slots"]) for w in listed["workers"]] == [("w1", 2, 2)]
    one = ok(await master.client.get("/api/v1/workers/w1"))
    assert one["state"] == "active" and one["hostname"] == "test-host"
    problem(await master.client.get("/api/v1/workers/w9"), 404, "not-found")


async def test_drain_and_activate(master: Master) -> None:
    master.register_worker("w1")
    drained = ok(await master.client.patch("/api/v1/workers/w1", json={"state": "draining"}))
    assert drained["state"] == "draining" and drained["drained_by"] is not None
    task = ok(await master.client.post("/api/v1/tasks", json={"command": "true"}), 201)
    assert task["status"] == "queued"  # nothing is placed on a draining worker
    active = ok(await master.client.patch("/api/v1/workers/w1", json={"state": "active"}))
    assert active["state"] in ("active", "busy")
    problem(await master.client.patch("/api/v1/workers/w1", json={"state": "asleep"}), 422)
    problem(await master.client.patch("/api/v1/workers/w9", json={"state": "draining"}), 404)


async def test_deregister(master: Master) -> None:
    master.register_worker("w1")
    master.register_worker("w2")
    ok(await master.client.post("/api/v1/tasks", json={"command": "true"}), 201)
    busy = next(w for w in master.machine.workers.values() if w.running)
    idle = "w2" if busy.id == "w1" else "w1"
    ok(await master.client.delete(f"/api/v1/workers/{idle}"))
    problem(await master.client.delete(f"/api/v1/workers/{busy.id}"), 409)  # still runs one
    ok(await master.client.delete(f"/api/v1/workers/{busy.id}", params={"force": "true"}))
    assert master.machine.workers == {}
    problem(await master.client.delete("/api/v1/workers/w9"), 404)


async def test_a_session_is_refused_through_plain_http(master: Master) -> None:
    problem(await master.client.get("/api/v1/workers/w1/session"), 404)
