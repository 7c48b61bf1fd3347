"""Red-team finding on strict JSON (README "Browsers and strict JSON": a body that is not JSON is
400, NaN and the like 422, "and nothing is committed"): the routes that take no body
(``POST .../agents/{id}/disconnect``, ``POST .../tasks/{id}/cancel``) never read the one they
are sent, so any body, JSON or not, commits the disconnect or the cancel."""

from __future__ import annotations

import httpx

from tests.e2e.procs import Processes

ADMIN = "admin-" + "b" * 24
JSON = {"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"}


def test_a_body_that_is_not_strict_json_commits_nothing_on_bodiless_routes(
    procs: Processes,
) -> None:
    _, url = procs.master("m1", None, "--api-token", ADMIN)  # no worker: the task stays queued
    with httpx.Client(timeout=10, headers=JSON) as http:
        connected = http.post(url + "/api/v1/agents/a1/connect", json={})
        assert connected.status_code == 200, connected.text
        task = http.post(url + "/api/v1/tasks", json={"command": "true"})
        assert task.status_code == 201, task.text
        task_id = task.json()["id"]

        answers = {
            "disconnect NaN": http.post(
                url + "/api/v1/agents/a1/disconnect", content=b'{"a": NaN}'
            ).status_code,
            "cancel not-JSON": http.post(
                url + f"/api/v1/tasks/{task_id}/cancel", content=b"not json"
            ).status_code,
        }
        state = {
            "agent live": http.get(url + "/api/v1/agents/a1").json()["live"],
            "task status": http.get(url + f"/api/v1/tasks/{task_id}").json()["status"],
        }
    assert (answers, state) == (
        {"disconnect NaN": 422, "cancel not-JSON": 400},
        {"agent live": True, "task status": "queued"},
    )
