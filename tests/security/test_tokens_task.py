"""Task tokens (issue 12, finding 7): a task gets a token scoped to its attempt instead of the
worker's API token; it works for its own locks, messages and tasks, is refused for anything
else, and stops working when the attempt ends."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from agentflow import Client
from tests.e2e.procs import Processes, wait_until

ADMIN = "admin-" + "t" * 24
PROBE = Path(__file__).with_name("task_probe.py")


FUNCTIONS = """
import os

def env_token():
    return os.environ.get("AGENTFLOW_API_TOKEN"), os.environ.get("AGENTFLOW_TASK_ID")
"""


def _run_probe(procs: Processes, tmp_path: Path) -> tuple[str, str, dict[str, Any]]:
    _, url = procs.master("m1", None, "--api-token", ADMIN)
    # The worker's token reaches it through its environment, as an operator would set it.
    procs.worker("w1", url, env={"AGENTFLOW_API_TOKEN": ADMIN})
    wait_until(lambda: live_workers_as_admin(url) == 1, what="worker registered")
    out = tmp_path / "probe.json"
    with Client(url, token=ADMIN) as client:
        task = client.submit(args=[sys.executable, str(PROBE), str(out)])
        done = client.wait(task.id, timeout_s=30)
    assert done.ok, (done, done.raw)
    return url, task.id, json.loads(out.read_text())


def live_workers_as_admin(url: str) -> int:
    workers = httpx.get(url + "/api/v1/workers", headers=_as(ADMIN)).json()["workers"]
    return sum(1 for w in workers if w["state"] in ("active", "busy"))


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_task_holds_a_token_scoped_to_its_attempt(procs: Processes, tmp_path: Path) -> None:
    url, task_id, seen = _run_probe(procs, tmp_path)
    env: dict[str, str] = seen["env"]
    assert all(ADMIN not in value for value in env.values()), "the API token reached the task"
    token = env["AGENTFLOW_API_TOKEN"]
    assert token.startswith("aft_") and token.endswith(task_id)
    status = {name: probe["status"] for name, probe in seen.items() if name != "env"}
    assert status == {
        "own_lock": 200,
        "default_lock": 200,
        "named_session_lock": 403,
        "other_task_lock": 403,
        "send": 201,
        "send_as_self": 201,
        "send_as_other": 403,
        "batch_as_other": 403,
        "own_inbox": 200,
        "other_inbox": 403,
        "child_inbox": 403,
        "own_task": 200,
        "child": 201,  # nested tasks: a task submits as a client does
        "tokens": 403,
        "make_token": 403,
        "drain": 403,
        "force_release": 403,
        "history": 403,
    }
    session = f"task:{task_id}:"
    assert seen["own_lock"]["body"]["session"].startswith(session)
    assert seen["default_lock"]["body"]["session"].startswith(session)
    assert seen["send"]["body"]["from"] == task_id  # set from the token, not chosen
    assert seen["send_as_other"]["body"]["code"] == "forbidden"

    # The attempt is over: its token with it. Nothing it was refused was committed.
    assert httpx.get(url + f"/api/v1/tasks/{task_id}", headers=_as(token)).status_code == 401
    history = httpx.get(url + "/api/v1/messages", headers=_as(ADMIN)).json()["messages"]
    assert sorted(m["from"] for m in history) == [task_id, task_id]
    locks = httpx.get(url + "/api/v1/locks", headers=_as(ADMIN)).json()["locks"]
    assert all(lock["name"] not in ("job3", "job4") for lock in locks)
    assert httpx.get(url + "/health").status_code == 200


def test_a_function_task_holds_its_own_token_too(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master("m1", None, "--api-token", ADMIN)
    (tmp_path / "af_token_jobs.py").write_text(FUNCTIONS)
    procs.worker("w1", url, env={"AGENTFLOW_API_TOKEN": ADMIN, "PYTHONPATH": str(tmp_path)})
    sys.path.insert(0, str(tmp_path))
    try:
        jobs = importlib.import_module("af_token_jobs")
        with Client(url, token=ADMIN) as client:
            token, task_id = client.submit(jobs.env_token).result(timeout_s=30)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("af_token_jobs", None)
    assert token != ADMIN
    assert token.startswith("aft_") and token.endswith(task_id)
