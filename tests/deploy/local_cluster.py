"""Localised masters and workers (compose services, Kubernetes pods) run as processes, and the
checks both runs share: the masters form one cluster, a task submitted by the CLI runs."""

from __future__ import annotations

import os
import subprocess

import httpx

from tests.deploy.compose_local import Container
from tests.e2e.procs import BIN, Proc, Processes, wait_until

__all__ = ["CLUSTER_TIMEOUT_S", "answers", "clean_environment", "form_and_run", "start"]

CLUSTER_TIMEOUT_S = 45.0
TASK_TIMEOUT_S = 60.0
# Variables a caller's environment could hold that would change what the processes run with.
FOREIGN = ("AGENTFLOW_", "HEALTHCHECK_URL")


def clean_environment() -> list[str]:
    """The caller's variables to drop: the deployment file's environment is the whole of it."""
    return [var for var in os.environ if var.startswith(FOREIGN)]


def start(procs: Processes, container: Container) -> Proc:
    """``container``'s command line with its environment, its ``agentflow`` this venv's."""
    env = {**container.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = Proc(container.argv, procs.root / f"{container.name}.log", env=env)
    procs.procs.append(proc)
    return proc


def answers(url: str, started: dict[str, Proc]) -> bool:
    """True once ``url`` answers 200; fails at once if a started process died."""
    for name, proc in started.items():
        assert proc.alive(), f"{name} exited:\n{proc.log()}"
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def form_and_run(
    procs: Processes,
    started: dict[str, Proc],
    urls: list[str],
    workers: list[Container],
    token_file: str,
) -> None:
    """Every master ready and agreeing on one leader, then ``workers`` connected, then a task
    submitted through the CLI completed by one of them."""
    for url in urls:
        wait_until(lambda u=url: answers(u + "/health/ready", started), CLUSTER_TIMEOUT_S, url)
    with open(token_file) as fh:
        headers = {"Authorization": f"Bearer {fh.read().strip()}"}
    views = [httpx.get(u + "/api/v1/cluster", headers=headers, timeout=5).json() for u in urls]
    assert len({v["leader_id"] for v in views}) == 1 and views[0]["leader_id"] in started
    assert {m["id"] for m in views[0]["members"]} == set(started)
    for container in workers:
        started[container.name] = start(procs, container)
    wait_until(lambda: _live_workers(urls[0], headers) == len(workers), CLUSTER_TIMEOUT_S)
    env = {**os.environ, "AGENTFLOW_URL": ",".join(urls), "AGENTFLOW_API_TOKEN_FILE": token_file}
    argv = [str(BIN / "agentflow"), "submit", "--wait", "--command", "echo ran-from-deploy"]
    ran = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=TASK_TIMEOUT_S, check=False
    )
    assert ran.returncode == 0 and "ran-from-deploy" in ran.stdout, ran.stdout + ran.stderr
    (task,) = httpx.get(urls[-1] + "/api/v1/tasks", headers=headers, timeout=5).json()["tasks"]
    live = httpx.get(urls[0] + "/api/v1/workers", headers=headers, timeout=5).json()["workers"]
    assert task["status"] == "completed" and task["worker_id"] in {w["id"] for w in live}


def _live_workers(url: str, headers: dict[str, str]) -> int:
    workers = httpx.get(url + "/api/v1/workers", headers=headers, timeout=5).json()["workers"]
    return sum(1 for w in workers if w["state"] in ("active", "busy"))
