"""deploy/compose.yaml runs: its services' exact command lines and environments, started as
local processes (tests/deploy/compose_local.py says what is moved), form a three-master
cluster, and a task submitted through the CLI runs on one of its two workers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.compose_local import Container, Localised, load_compose, localise
from tests.deploy.dockerfile import healthcheck_argv
from tests.docs.blocks import ROOT
from tests.e2e.procs import BIN, Proc, Processes, wait_until

COMPOSE = ROOT / "deploy" / "compose.yaml"
CLUSTER_TIMEOUT_S = 45.0
TASK_TIMEOUT_S = 60.0


@pytest.fixture
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE)


def test_three_masters_two_workers_secrets_and_named_volumes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    masters = [s for s in services.values() if s["command"][1:] == ["master"]]
    workers = [s for s in services.values() if s["command"][1:] == ["worker"]]
    assert len(masters) == 3
    assert sum(int(w.get("deploy", {}).get("replicas", 1)) for w in workers) == 2
    for spec in services.values():
        for var, value in spec["environment"].items():
            assert "TOKEN" not in var or var.endswith("_FILE"), f"{var}: a token in plain sight"
            assert "/run/secrets/" not in str(value) or str(value).rsplit("/", 1)[1] in spec.get(
                "secrets", []
            ), f"{var} reads a secret the service does not mount"
    named = set(compose["volumes"])
    for spec in masters:
        (volume,) = spec["volumes"]
        source, target = volume.split(":")
        assert source in named and spec["environment"]["AGENTFLOW_DATA_DIR"] == target
    for name, secret in compose["secrets"].items():  # the token files are never committed
        path = COMPOSE.parent / secret["file"]
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, check=False)
        assert ignored.returncode == 0, f"secret {name} ({path}) is not git-ignored"


@pytest.mark.slow
def test_the_compose_services_form_a_cluster_and_run_a_task(
    compose: dict[str, Any], procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in list(os.environ):  # the compose file's environment, not the caller's
        if var.startswith("AGENTFLOW_") or var == "HEALTHCHECK_URL":
            monkeypatch.delenv(var)
    local = localise(compose, tmp_path / "compose")
    masters = [c for c in local.containers if c.argv[1:] == ["master"]]
    workers = [c for c in local.containers if c.argv[1:] == ["worker"]]
    urls = [f"http://127.0.0.1:{port}" for c in masters for port in local.published[c.service]]
    # One master of three: alive, but not ready (no quorum, so no leader).
    started = {masters[0].name: _start(procs, masters[0])}
    wait_until(lambda: _answers(urls[0] + "/health", started), CLUSTER_TIMEOUT_S)
    alone = httpx.get(urls[0] + "/health/ready", timeout=5)
    assert alone.status_code == 503 and "no leader" in alone.json()["detail"], alone.text
    started.update({c.name: _start(procs, c) for c in masters[1:]})
    for url in urls:
        wait_until(lambda u=url: _ready(u, started), CLUSTER_TIMEOUT_S, f"{url} ready")
    headers = {"Authorization": f"Bearer {local.secret_files['api_token'].read_text().strip()}"}
    views = [httpx.get(u + "/api/v1/cluster", headers=headers, timeout=5).json() for u in urls]
    assert len({v["leader_id"] for v in views}) == 1 and views[0]["leader_id"] in started
    assert {m["id"] for m in views[0]["members"]} == set(started)
    for container in workers:
        started[container.name] = _start(procs, container)
    wait_until(lambda: _live_workers(urls[0], headers) == len(workers), CLUSTER_TIMEOUT_S)
    for container in (masters[0], workers[0]):
        assert _healthcheck(container).returncode == 0, f"HEALTHCHECK failed in {container.name}"

    ran = _submit(local, urls)
    assert ran.returncode == 0, ran.stderr
    assert "ran-from-compose" in ran.stdout
    tasks = httpx.get(urls[1] + "/api/v1/tasks", headers=headers, timeout=5).json()["tasks"]
    (task,) = tasks
    workers_seen = httpx.get(urls[2] + "/api/v1/workers", headers=headers, timeout=5).json()
    assert task["status"] == "completed"
    assert task["worker_id"] in {w["id"] for w in workers_seen["workers"]}


def _start(procs: Processes, container: Container) -> Proc:
    env = {**container.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = Proc(container.argv, procs.root / f"{container.name}.log", env=env)
    procs.procs.append(proc)
    return proc


def _ready(url: str, started: dict[str, Proc]) -> bool:
    return _answers(url + "/health/ready", started)


def _answers(url: str, started: dict[str, Proc]) -> bool:
    for name, proc in started.items():
        assert proc.alive(), f"{name} exited:\n{proc.log()}"
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _live_workers(url: str, headers: dict[str, str]) -> int:
    workers = httpx.get(url + "/api/v1/workers", headers=headers, timeout=5).json()["workers"]
    return sum(1 for w in workers if w["state"] in ("active", "busy"))


def _healthcheck(container: Container) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command, run in the container's environment."""
    argv = healthcheck_argv()
    env = {**os.environ, **container.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)


def _submit(local: Localised, urls: list[str]) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AGENTFLOW_URL": ",".join(urls),
        "AGENTFLOW_API_TOKEN_FILE": str(local.secret_files["api_token"]),
    }
    argv = [str(BIN / "agentflow"), "submit", "--wait", "--command", "echo ran-from-compose"]
    return subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=TASK_TIMEOUT_S, check=False
    )
