"""``agentflow top --once`` against a real master and worker: one frame with the cluster, the
queue, the workers and the task that runs."""

from __future__ import annotations

import os
import subprocess

import httpx

from tests.e2e.procs import BIN, Processes, live_workers, wait_until


def _top(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "agentflow"), "top", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_top_once_shows_cluster_queue_workers_and_running_tasks(procs: Processes):
    _, url = procs.master("m1")
    procs.worker("w-top", url, "--slots", "1")
    wait_until(lambda: live_workers(url) == 1, what="the worker to register")
    with httpx.Client(timeout=10) as client:
        running = client.post(
            f"{url}/api/v1/tasks", json={"command": "sleep 30", "title": "long sleeper"}
        ).json()["id"]
        queued = client.post(f"{url}/api/v1/tasks", json={"command": "true"}).json()["id"]

        def started() -> bool:
            return client.get(f"{url}/api/v1/tasks/{running}").json()["status"] == "running"

        wait_until(started, what="the task to start")
        done = _top("--once", "--master-url", url)
        assert done.returncode == 0, done.stderr
        out = done.stdout
        assert "leader m1" in out and "term" in out  # cluster
        # the second task waits: in the queue, or held by the worker beyond its slot
        assert "queued 1 " in out or "assigned 1 " in out
        assert "w-top" in out and "1/1" in out  # the worker, its slot busy
        assert running in out and "long sleeper" in out  # the running task
        assert queued not in out  # only running tasks are listed
        client.post(f"{url}/api/v1/tasks/{running}/cancel")


def test_top_refuses_bad_options_in_one_line():
    done = _top("--once", "--tasks", "100000", "--master-url", "http://127.0.0.1:9")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--tasks" in done.stderr and "top --help" in done.stderr
    done = _top("--once", "--master-url", "http://127.0.0.1:9")  # nothing listens there
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "no master reachable" in done.stderr
