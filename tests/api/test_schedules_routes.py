"""Schedule routes in process: create, list, show, pause and resume, edit, delete; bad input
refused with problem+json before anything reaches the log; runs made on the master's clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.api.conftest import ADMIN_TOKEN, Master, ok, problem

TASK = {"command": "echo tick"}


async def _fire(master: Master, seconds: float) -> None:
    """Move the master's clock and run the leader's schedule pass once."""
    master.clock.now += int(seconds * 1000)
    await master.service.scheduler.fire_schedules()


async def _create(master: Master, **body: Any) -> dict[str, Any]:
    body = {"name": "tick", "every": "1s", "task": TASK} | body
    made: dict[str, Any] = ok(await master.client.post("/api/v1/schedules", json=body), 201)
    return made


async def test_create_list_show_and_a_run_on_the_masters_clock(master: Master) -> None:
    made = await _create(master, overlap="allow")
    assert made["every"] == "1s" and made["paused"] is False and made["last_run"] is None
    assert made["task"]["spec"]["command"] == "echo tick"
    await _fire(master, 1.2)
    shown = ok(await master.client.get("/api/v1/schedules/tick"))
    fire_ms = master.clock.now - 200
    assert shown["last_run_ms"] == fire_ms and shown["runs"] == 1
    assert shown["last_run_key"] == f"schedule:tick:{fire_ms}"
    task = ok(await master.client.get(f"/api/v1/tasks/{shown['last_task_id']}"))
    assert task["idempotency_key"] == f"schedule:tick:{fire_ms}" and task["status"] == "queued"
    listed = ok(await master.client.get("/api/v1/schedules"))["schedules"]
    assert [(s["name"], s["next_run_ms"]) for s in listed] == [("tick", fire_ms + 1000)]
    for field in ("timezone", "overlap", "catchup", "next_run", "last_run", "last_task_id"):
        assert field in listed[0]


async def test_a_cron_schedule_in_a_time_zone_and_a_workflow(master: Master) -> None:
    workflow = {
        "name": "nightly",
        "tasks": [
            {"id": "a", "command": "true"},
            {"id": "b", "command": "true", "dependencies": ["a"]},
        ],
    }
    made = await _create(
        master,
        name="nightly",
        every=None,
        cron="0 3 * * *",
        timezone="Europe/Paris",
        task=None,
        workflow=workflow,
    )
    assert made["cron"] == "0 3 * * *" and made["timezone"] == "Europe/Paris"
    assert made["next_run"].endswith(("T02:00:00.000+00:00", "T01:00:00.000+00:00"))
    await _fire(master, (made["next_run_ms"] - master.clock.now) / 1000 + 0.5)
    shown = ok(await master.client.get("/api/v1/schedules/nightly"))
    wf = ok(await master.client.get(f"/api/v1/workflows/{shown['last_workflow_id']}"))
    assert wf["name"] == "nightly" and wf["status"] == "running"


@pytest.mark.parametrize(
    "body",
    [
        {"cron": "* * * *", "every": None},
        {"cron": "99 * * * *", "every": None},
        {"cron": "0 3 * * *", "every": None, "timezone": "Mars/Olympus"},
        {"every": "soon"},
        {"every": "10ms"},
        {"every": -5},
        {"every": "1s", "cron": "* * * * *"},
        {"every": None},
        {"task": None},
        {"task": {"command": "true", "idempotency_key": "k"}},
        {"task": {"command": "true", "priority": "whenever"}},
        {
            "task": None,
            "workflow": {"tasks": [{"id": "a", "command": "true", "dependencies": ["a"]}]},
        },
        {"overlap": "sometimes"},
        {"catchup": "forever"},
        {"name": "no spaces"},
        {"every": "1s", "timezone": "UTC"},
    ],
)
async def test_bad_input_is_refused_and_nothing_is_committed(
    master: Master, body: dict[str, Any]
) -> None:
    entries = len(master.log.entries)
    full = {"name": "tick", "every": "1s", "task": TASK} | body
    problem(await master.client.post("/api/v1/schedules", json=full), 422)
    assert len(master.log.entries) == entries
    assert ok(await master.client.get("/api/v1/schedules"))["schedules"] == []


async def test_pause_resume_edit_and_delete(master: Master) -> None:
    await _create(master, overlap="allow")
    paused = ok(await master.client.patch("/api/v1/schedules/tick", json={"paused": True}))
    assert paused["paused"] is True and paused["next_run"] is None
    await _fire(master, 5)
    assert ok(await master.client.get("/api/v1/schedules/tick"))["runs"] == 0
    ok(await master.client.patch("/api/v1/schedules/tick", json={"paused": False}))
    await _fire(master, 1)
    resumed = ok(await master.client.get("/api/v1/schedules/tick"))
    assert resumed["runs"] == 1  # the time paused did not run
    edited = ok(
        await master.client.patch(
            "/api/v1/schedules/tick", json={"cron": "*/5 * * * *", "overlap": "skip"}
        )
    )
    assert edited["cron"] == "*/5 * * * *" and "every" not in edited and edited["overlap"] == "skip"
    entries = len(master.log.entries)
    problem(await master.client.patch("/api/v1/schedules/tick", json={"cron": "nope"}), 422)
    problem(await master.client.patch("/api/v1/schedules/tick", json={"overlap": "x"}), 422)
    assert len(master.log.entries) == entries
    assert ok(await master.client.delete("/api/v1/schedules/tick")) == {
        "name": "tick",
        "deleted": True,
    }
    problem(await master.client.get("/api/v1/schedules/tick"), 404)
    problem(await master.client.delete("/api/v1/schedules/tick"), 404)
    problem(await master.client.patch("/api/v1/schedules/tick", json={"paused": True}), 404)
    assert len(master.log.entries) == entries + 1
    assert resumed["last_task_id"] in master.machine.tasks  # its runs stay


async def test_a_name_is_taken_once(master: Master) -> None:
    await _create(master)
    entries = len(master.log.entries)
    problem(
        await master.client.post(
            "/api/v1/schedules", json={"name": "tick", "every": 5, "task": TASK}
        ),
        409,
    )
    assert len(master.log.entries) == entries


async def test_a_read_only_token_reads_schedules_but_changes_none(guarded: Master) -> None:
    client = guarded.client
    await _create(guarded)
    reader = ok(await client.post("/api/v1/tokens", json={"role": "read-only"}), 201)["token"]
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert (
        ok(await client.get("/api/v1/schedules", headers=as_reader))["schedules"][0]["name"]
        == "tick"
    )
    body = {"name": "other", "every": "1m", "task": TASK}
    problem(await client.post("/api/v1/schedules", json=body, headers=as_reader), 403)
    problem(
        await client.patch("/api/v1/schedules/tick", json={"paused": True}, headers=as_reader), 403
    )
    problem(await client.delete("/api/v1/schedules/tick", headers=as_reader), 403)
    assert ADMIN_TOKEN not in str(ok(await client.get("/api/v1/schedules/tick")))


async def test_the_leaders_timer_loop_fires_on_the_masters_clock(master: Master) -> None:
    """No test hook: the scheduler loop the master runs sees the clock pass a fire time."""
    await _create(master, every="1m", overlap="allow")
    master.clock.now += 60_000
    master.service.scheduler.poke()
    deadline = asyncio.get_running_loop().time() + 10
    while master.machine.schedules.schedules["tick"].runs == 0:
        assert asyncio.get_running_loop().time() < deadline, "the loop never fired"
        await asyncio.sleep(0.01)
    assert len(master.machine.tasks) == 1
