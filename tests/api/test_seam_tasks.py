"""Task routes in process: submit, list, read, wait, cancel, reprioritise, output, queue."""

from __future__ import annotations

from pathlib import Path

from agentflow.errors import OverloadedError, UnavailableError
from tests.api.conftest import Master, master_with, ok, problem

TASK = {"title": "Test Task", "description": "echo Hello"}


async def test_submit_read_and_list(master: Master) -> None:
    created = ok(await master.client.post("/api/v1/tasks", json=TASK), 201)
    assert created["created"] is True and created["status"] == "queued"
    assert created["title"] == "Test Task"
    got = ok(await master.client.get(f"/api/v1/tasks/{created['id']}"))
    assert got["id"] == created["id"] and got["priority"] == "medium"
    listed = ok(await master.client.get("/api/v1/tasks", params={"status": "queued"}))
    assert [t["id"] for t in listed["tasks"]] == [created["id"]]
    assert ok(await master.client.get("/api/v1/tasks", params={"status": "running"}))["tasks"] == []


async def test_idempotency_key_makes_one_task(master: Master) -> None:
    body = TASK | {"idempotency_key": "k-1"}
    first = ok(await master.client.post("/api/v1/tasks", json=body), 201)
    again = ok(await master.client.post("/api/v1/tasks", json=body), 200)
    assert again["id"] == first["id"] and again["created"] is False
    assert len(master.machine.tasks) == 1


async def test_batch_and_pages(master: Master) -> None:
    batch = {"tasks": [TASK | {"title": f"t{i}"} for i in range(5)]}
    answer = ok(await master.client.post("/api/v1/tasks/batch", json=batch), 201)
    assert answer["count"] == 5
    ids = [t["id"] for t in answer["tasks"]]
    first = ok(await master.client.get("/api/v1/tasks", params={"limit": 2}))
    assert [t["id"] for t in first["tasks"]] == ids[::-1][:2]  # newest first
    second = ok(
        await master.client.get(
            "/api/v1/tasks", params={"limit": 2, "cursor": first["next_cursor"]}
        )
    )
    assert [t["id"] for t in second["tasks"]] == ids[::-1][2:4]
    problem(await master.client.get("/api/v1/tasks", params={"cursor": "nope"}), 422)


async def test_a_task_runs_to_completion_and_a_waiter_hears_it(master: Master) -> None:
    master.register_worker("w1")
    created = ok(await master.client.post("/api/v1/tasks", json=TASK), 201)
    assert created["status"] == "assigned"  # placed inline by the entry that submitted it
    master.report_output(created["id"], "stdout", b"Hello\n")
    master.finish(created["id"], exit_code=0)
    done = ok(await master.client.get(f"/api/v1/tasks/{created['id']}", params={"wait_s": 5}))
    assert done["status"] == "completed" and done["exit_code"] == 0
    output = ok(await master.client.get(f"/api/v1/tasks/{created['id']}/output"))
    assert output["finished"] is True and output["stdout"] == "Hello\n"
    path = f"/api/v1/tasks/{created['id']}/output"
    followed = await master.client.get(path, params={"follow": "true"})
    assert followed.status_code == 200 and followed.text == "Hello\n"
    resumed = await master.client.get(
        path, params={"follow": "true", "stream": "stdout", "offset": 2}
    )
    assert resumed.text == "llo\n"
    stats = ok(await master.client.get("/api/v1/queue/stats"))
    assert stats["totals"]["completed"] == 1 and stats["workers"]["live"] == 1


async def test_cancel_and_priority(master: Master) -> None:
    task_id = ok(await master.client.post("/api/v1/tasks", json=TASK), 201)["id"]
    raised = ok(await master.client.patch(f"/api/v1/tasks/{task_id}", json={"priority": "urgent"}))
    assert raised["priority"] == "urgent"
    problem(
        await master.client.patch(f"/api/v1/tasks/{task_id}", json={"priority": "asap"}),
        422,
        "validation",
    )
    cancelled = ok(await master.client.post(f"/api/v1/tasks/{task_id}/cancel"))
    assert cancelled["status"] == "cancelled"
    stats = ok(await master.client.get("/api/v1/queue/stats"))
    assert stats["queued"] == 0 and stats["totals"]["cancelled"] == 1


async def test_unknown_task_is_a_404_problem(master: Master) -> None:
    body = problem(await master.client.get("/api/v1/tasks/t-missing"), 404, "not-found")
    assert body["instance"] == "/api/v1/tasks/t-missing"
    problem(await master.client.post("/api/v1/tasks/t-missing/cancel"), 404, "not-found")
    problem(await master.client.get("/api/v1/tasks/t-missing/output"), 404, "not-found")


async def test_bad_bodies_are_refused_before_anything_is_committed(master: Master) -> None:
    before = len(master.log.entries)
    problem(await master.client.post("/api/v1/tasks", json=TASK | {"nope": 1}), 422)
    problem(await master.client.post("/api/v1/tasks", json=TASK | {"max_retries": -1}), 422)
    json_type = {"content-type": "application/json"}
    problem(await master.client.post("/api/v1/tasks", content=b"{not", headers=json_type), 400)
    problem(
        await master.client.post(
            "/api/v1/tasks", content=b"title=x", headers={"content-type": "text/plain"}
        ),
        415,
    )
    problem(await master.client.get("/api/v1/tasks", params={"status": "sleeping"}), 422)
    problem(await master.client.get("/api/v1/tasks", params={"limit": 0}), 422)
    problem(
        await master.client.get("/api/v1/tasks/x/output", params={"stream": "stdout"}),
        404,  # the task is looked up first
    )
    assert len(master.log.entries) == before


async def test_output_options_need_follow(master: Master) -> None:
    task_id = ok(await master.client.post("/api/v1/tasks", json=TASK), 201)["id"]
    problem(
        await master.client.get(f"/api/v1/tasks/{task_id}/output", params={"stream": "stdout"}),
        422,
    )


async def test_unknown_route_and_wrong_method(master: Master) -> None:
    assert ok(await master.client.get("/api/v1"))
    problem(await master.client.get("/api/v1/nothing-here"), 404, "not-found")
    answer = await master.client.put("/api/v1/tasks", json=TASK)
    problem(answer, 405)
    assert set(answer.headers["allow"].split(", ")) == {"GET", "POST"}


async def test_a_follower_refuses_writes_naming_no_leader(master: Master) -> None:
    master.log.set_leader(None)
    body = problem(await master.client.post("/api/v1/tasks", json=TASK), 503, "not-leader")
    assert body["leader_known"] is False
    # A linearizable read cannot be confirmed without a leader; a stale one is served.
    problem(await master.client.get("/api/v1/tasks"), 503, "unavailable")
    assert ok(await master.client.get("/api/v1/tasks", params={"consistency": "stale"}))
    master.log.set_leader(master.log.node_id)
    ok(await master.client.post("/api/v1/tasks", json=TASK), 201)


async def test_a_refused_proposal_is_the_clients_problem_document(master: Master) -> None:
    master.log.fail_next(UnavailableError("no quorum"))
    problem(await master.client.post("/api/v1/tasks", json=TASK), 503, "unavailable")
    master.log.fail_next(OverloadedError("too many commands waiting"))
    problem(await master.client.post("/api/v1/tasks", json=TASK), 429, "overloaded")
    assert len(master.machine.tasks) == 0


async def test_the_queue_limit_is_a_429(tmp_path: Path) -> None:
    async for master in master_with(tmp_path, max_queued_tasks=2):
        batch = {"tasks": [TASK, TASK]}
        ok(await master.client.post("/api/v1/tasks/batch", json=batch), 201)
        problem(await master.client.post("/api/v1/tasks", json=TASK), 429, "overloaded")
        assert len(master.machine.tasks) == 2
