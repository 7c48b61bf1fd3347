"""A rolling upgrade of three masters under SDK load, in the order ``upgrade-plan`` prints.

The masters start on the release before format versions (that commit's source, from git,
run with the same venv): version N. Each member in the plan's order is stopped with SIGTERM
(leadership moved away first if it leads), restarted on this code (version N+1) on the same
data directory, and waited on until it has caught up; meanwhile a client submits tasks with
idempotency keys and reads them back, and a worker runs them. While any member is of version N,
the leader writes log format 1 (what N reads); once all are N+1, format 2. At the end no
request failed beyond the SDK's own retries, every acknowledged task completed, and every
member has the same state digest. Without git history, N is this code too (the order, the
restarts and the load are tested all the same).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow import Client
from agentflow.state.envelope import LOG_FORMAT
from tests.e2e.previous_release import previous_release
from tests.e2e.procs import BIN, Cluster, Processes, wait_until

pytestmark = pytest.mark.raft_only  # the previous release has no --store


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # this code's CLI
    done = subprocess.run(
        [str(BIN / "agentflow"), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env=env,
    )
    assert done.returncode == 0, f"agentflow {' '.join(args)}: {done.stderr}"
    return done


class Load:
    """Submits with idempotency keys and reads back, from a thread, until stopped."""

    def __init__(self, urls: str) -> None:
        self.client = Client(urls, retry_for_s=30.0)
        self.acknowledged: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="upgrade-load")

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                task = self.client.submit("true", idempotency_key=f"upgrade-{n}")
                self.acknowledged.append(task.id)
                self.client.get(task.id)
            except Exception as exc:  # any failure beyond the SDK's retries is the finding
                self.failures.append(f"request {n}: {type(exc).__name__}: {exc}")
            self._stop.wait(0.02)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self.client.close()


def _leader_status(cluster: Cluster) -> dict[str, Any]:
    leader = cluster.leader()
    status = cluster.status(leader)
    assert status is not None
    return status


def _restart(cluster: Cluster, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cluster.terminate(name) in (0, -signal.SIGTERM)  # uvicorn re-raises it once done
    monkeypatch.delenv("PYTHONPATH", raising=False)  # version N+1: this code
    cluster.start(name)
    _cli("cluster", "wait-caught-up", name, "--master-url", cluster.urls, "--timeout", "60s")


def test_rolling_upgrade_under_load_loses_nothing(
    procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = previous_release(tmp_path / "previous")
    if old is not None:
        monkeypatch.setenv("PYTHONPATH", str(old))  # version N: the release before formats
    cluster = procs.cluster(3)
    leader = cluster.leader()
    procs.worker("w1", cluster.urls, "--slots", "4")
    plan = json.loads(
        _cli("cluster", "upgrade-plan", "-o", "json", "--master-url", cluster.urls).stdout
    )
    order = plan["order"]
    assert order[-1] == leader and sorted(order) == ["m1", "m2", "m3"]
    with Load(cluster.urls) as load:
        wait_until(lambda: len(load.acknowledged) >= 5, 30, "the load running")
        for name in order:
            if cluster.leader() == name:
                _cli("cluster", "transfer-leader", order[0], "--master-url", cluster.url(name))
                wait_until(lambda n=name: cluster.leader() != n, 30, f"leadership away from {name}")
                if old is not None:
                    # Led by N+1 with the old leader still of version N: format 1 it reads.
                    formats = _leader_status(cluster)["formats"]
                    assert formats["members"][name] == [1, 1], formats
                    assert formats["log_written"] == 1, formats
            _restart(cluster, name, monkeypatch)
            seen = len(load.acknowledged)
            wait_until(lambda s=seen: len(load.acknowledged) >= s + 3, 30, "load after restart")
    assert load.failures == []
    wait_until(
        lambda: _leader_status(cluster)["formats"]["log_written"] == LOG_FORMAT,
        30,
        f"log format {LOG_FORMAT} once every member reads it",
    )
    with Client(cluster.urls) as client:
        ended = client.wait_many(load.acknowledged, timeout_s=60)
        assert {info.status for info in ended} == {"completed"}
    cluster.wait_converged()
    for name in cluster.masters:
        status = cluster.status(name)
        assert status is not None and status["rejected_entries"]["total"] == 0
    _cli("cluster", "status", "--master-url", cluster.urls)
    metrics = httpx.get(cluster.url(cluster.leader()) + "/metrics", timeout=5).text
    assert f"agentflow_log_format_written {LOG_FORMAT}.0" in metrics
    assert httpx.get(cluster.url(order[0]) + "/health", timeout=5).status_code == 200
