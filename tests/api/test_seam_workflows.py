"""Workflow routes in process: validate, submit, read, graph, cancel, retry."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Master, ok, problem

WORKFLOW = {
    "name": "build",
    "tasks": [
        {"id": "fetch", "command": "echo fetch"},
        {"id": "test", "command": "echo test", "dependencies": ["fetch"]},
        {"id": "ship", "command": "echo ship", "dependencies": ["test"]},
    ],
}


def by_key(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["key"]: t for t in view["tasks"]}


async def test_validate_is_a_dry_run(master: Master) -> None:
    answer = ok(await master.client.post("/api/v1/workflows/validate", json=WORKFLOW))
    assert answer["valid"] is True
    assert answer["analysis"]["critical_path"] == ["fetch", "test", "ship"]
    cycle = {"tasks": [{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["a"]}]}
    problem(await master.client.post("/api/v1/workflows/validate", json=cycle), 422)
    unknown = {"tasks": [{"id": "a", "dependencies": ["ghost"]}]}
    problem(await master.client.post("/api/v1/workflows/validate", json=unknown), 422)
    assert master.log.entries == [] and master.machine.workflows == {}


async def test_submit_read_graph_and_list(master: Master) -> None:
    created = ok(await master.client.post("/api/v1/workflows", json=WORKFLOW), 201)
    assert created["created"] is True and created["status"] == "running"
    tasks = by_key(created)
    assert tasks["fetch"]["status"] == "queued" and tasks["ship"]["status"] == "pending"
    wf_id = created["id"]
    got = ok(await master.client.get(f"/api/v1/workflows/{wf_id}"))
    assert got["total"] == 3 and got["counts"] == {"queued": 1, "pending": 2}
    graph = ok(await master.client.get(f"/api/v1/workflows/{wf_id}/graph"))
    assert {n["key"]: n["dependencies"] for n in graph["nodes"]} == {
        "fetch": [],
        "test": ["fetch"],
        "ship": ["test"],
    }
    listed = ok(await master.client.get("/api/v1/workflows"))
    assert [w["id"] for w in listed["workflows"]] == [wf_id]


async def test_idempotent_submit(master: Master) -> None:
    body = WORKFLOW | {"idempotency_key": "wf-key"}
    first = ok(await master.client.post("/api/v1/workflows", json=body), 201)
    again = ok(await master.client.post("/api/v1/workflows", json=body), 200)
    assert again["id"] == first["id"] and again["created"] is False


async def test_a_workflow_runs_through_and_a_waiter_hears_it(master: Master) -> None:
    master.register_worker("w1")
    wf = ok(await master.client.post("/api/v1/workflows", json=WORKFLOW), 201)
    for key in ("fetch", "test", "ship"):
        master.finish(by_key(wf)[key]["id"])
    done = ok(await master.client.get(f"/api/v1/workflows/{wf['id']}", params={"wait_s": 5}))
    assert done["status"] == "completed" and done["percent_done"] == 100.0


async def test_failure_then_retry_reruns_only_what_failed(master: Master) -> None:
    master.register_worker("w1")
    wf = ok(await master.client.post("/api/v1/workflows", json=WORKFLOW), 201)
    ids = {key: t["id"] for key, t in by_key(wf).items()}
    master.finish(ids["fetch"])
    master.finish(ids["test"], status="failed", exit_code=1)
    failed = ok(await master.client.get(f"/api/v1/workflows/{wf['id']}"))
    assert failed["status"] == "failed"
    assert by_key(failed)["ship"]["status"] == "upstream_failed"
    retried = ok(await master.client.post(f"/api/v1/workflows/{wf['id']}/retry"))
    assert retried["retried_tasks"] == 2  # test and, downstream of it, ship
    assert retried["status"] == "running"
    assert by_key(retried)["fetch"]["status"] == "completed"


async def test_cancel(master: Master) -> None:
    wf = ok(await master.client.post("/api/v1/workflows", json=WORKFLOW), 201)
    cancelled = ok(await master.client.post(f"/api/v1/workflows/{wf['id']}/cancel"))
    assert cancelled["status"] == "cancelled"
    assert {t["status"] for t in cancelled["tasks"]} == {"cancelled"}


async def test_unknown_workflow_and_bad_bodies(master: Master) -> None:
    for answer in (
        await master.client.get("/api/v1/workflows/wf-missing"),
        await master.client.get("/api/v1/workflows/wf-missing/graph"),
        await master.client.post("/api/v1/workflows/wf-missing/cancel"),
        await master.client.post("/api/v1/workflows/wf-missing/retry"),
    ):
        problem(answer, 404, "not-found")
    duplicate = {"tasks": [{"id": "a", "command": "true"}, {"id": "a", "command": "true"}]}
    problem(await master.client.post("/api/v1/workflows", json=duplicate), 422)
    problem(await master.client.post("/api/v1/workflows", json={"tasks": [], "x": 1}), 422)
    assert master.machine.workflows == {}
