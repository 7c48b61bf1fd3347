"""kill -9 of the master at each point of the fast path (issue 14): the task still runs once.

The chain a task walks with placement inline: the submit's entry is committed (fsynced), then
applied, which assigns it; the assignment is pushed to the worker; the worker runs it and
reports. The master kills itself (SIGKILL, via the test-only ``AGENTFLOW_TEST_CRASH_AT``, see
:mod:`agentflow.faults`) at one point, is restarted on the same data directory and port, and
the client retries its submit with the same idempotency key, as the SDK does: one task, run
once, completed.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from agentflow.faults import CRASH_ENV
from agentflow.testing.ports import free_port
from tests.e2e.procs import Processes, live_workers, wait_until

KEY = "kill9-fast-path"


def _submit(url: str, marker: Path) -> str | None:
    """The task id, or None if the master died before answering."""
    body = {"command": f"echo ran >> {marker}", "idempotency_key": KEY}
    try:
        response = httpx.post(url + "/api/v1/tasks", json=body, timeout=10)
    except httpx.HTTPError:
        return None
    assert response.status_code in (200, 201), response.text
    task_id: str = response.json()["id"]
    return task_id


def _task(url: str, task_id: str) -> dict[str, object]:
    view: dict[str, object] = httpx.get(f"{url}/api/v1/tasks/{task_id}", timeout=5).json()
    return view


@pytest.mark.parametrize("point", ["before_apply", "before_push", "before_report"])
def test_a_fast_path_task_survives_kill9_of_the_master(
    procs: Processes, tmp_path: Path, point: str
) -> None:
    port, raft_port, data = free_port(), free_port(), tmp_path / "m1-data"
    master, url = procs.master(
        "m1", port, data_dir=data, raft_port=raft_port, env={CRASH_ENV: point}
    )
    procs.worker("w1", url, "--slots", "1")
    wait_until(lambda: live_workers(url) == 1, what="w1 registered")
    marker = tmp_path / "ran.txt"

    first_id = _submit(url, marker)
    wait_until(lambda: not master.alive(), what=f"the master killing itself {point}")
    assert master.popen.returncode == -9

    _, url = procs.master("m1", port, data_dir=data, raft_port=raft_port)
    task_id = _submit(url, marker)  # the client's retry: the same key, never a second task
    assert task_id is not None
    assert first_id in (None, task_id)
    wait_until(lambda: _task(url, task_id)["status"] == "completed", 30, "the task completed")
    assert marker.read_text() == "ran\n"  # it ran once
    history = _task(url, task_id)["attempt_history"]
    assert isinstance(history, list)
    assert [a["status"] for a in history].count("completed") == 1
