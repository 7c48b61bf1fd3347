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

from tests.deploy.compose_local import Container, load_compose, localise
from tests.deploy.dockerfile import healthcheck_argv
from tests.deploy.local_cluster import (
    CLUSTER_TIMEOUT_S,
    answers,
    clean_environment,
    form_and_run,
    start,
)
from tests.docs.blocks import ROOT
from tests.e2e.procs import BIN, Processes, wait_until

COMPOSE = ROOT / "deploy" / "compose.yaml"


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
    for var in clean_environment():
        monkeypatch.delenv(var)
    local = localise(compose, tmp_path / "compose")
    masters = [c for c in local.containers if c.argv[1:] == ["master"]]
    workers = [c for c in local.containers if c.argv[1:] == ["worker"]]
    urls = [f"http://127.0.0.1:{port}" for c in masters for port in local.published[c.service]]
    # One master of three: alive, but not ready (no quorum, so no leader).
    started = {masters[0].name: start(procs, masters[0])}
    wait_until(lambda: answers(urls[0] + "/health", started), CLUSTER_TIMEOUT_S)
    alone = httpx.get(urls[0] + "/health/ready", timeout=5)
    assert alone.status_code == 503 and "no leader" in alone.json()["detail"], alone.text
    started.update({c.name: start(procs, c) for c in masters[1:]})
    form_and_run(procs, started, urls, workers, str(local.secret_files["api_token"]))
    for container in (masters[0], workers[0]):  # the image's health check, in each role
        assert _healthcheck(container).returncode == 0, f"HEALTHCHECK failed in {container.name}"


def _healthcheck(container: Container) -> subprocess.CompletedProcess[str]:
    """The Dockerfile's HEALTHCHECK command, run in the container's environment."""
    argv = healthcheck_argv()
    env = {**os.environ, **container.env, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)
