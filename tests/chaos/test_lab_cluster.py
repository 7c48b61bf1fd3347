"""Real masters and workers on lab hosts: a leader reachable over the bridge, a new one after
kill -9, convergence after heal, and a full disk that stops a master's writes.

The checking code runs in a thread that entered the "ctl" host (`in_host`); the pytest
process itself stays in the root namespace, which has no route to the lab.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentflow.client import Client
from agentflow.testing.chaos.cluster import ChaosCluster, wait_for
from agentflow.testing.chaos.netns import Lab
from tests.chaos.labtools import in_host, make_lab

pytestmark = pytest.mark.slow

TASK_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 30.0  # a generous deadline on an observable condition


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(tmp_path)


def _completed(client: Client, task_id: str) -> bool:
    return client.get(task_id).status == "completed"


def test_three_masters_elect_survive_kill9_of_the_leader_and_converge(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add_host("ctl")
    cluster = ChaosCluster(lab, tmp_path / "cluster", masters=3, workers=1)

    def body() -> tuple[str, str]:
        cluster.start()
        first = cluster.wait_leader()
        assert httpx.get(cluster.masters[first].url + "/health", timeout=2).status_code == 200
        cluster.kill9(first)
        second = cluster.wait_leader()
        assert second != first and cluster.down() == [first]
        with Client(cluster.urls, retry_for_s=10) as client:
            task = client.submit("true")
            wait_for(lambda: _completed(client, task.id), TASK_TIMEOUT_S, "the task done")
        others = [n for n in cluster.masters if n not in (first, second)]
        fault = lab.partition([second], [*others, first])
        cluster.restart(first)
        lab.heal(fault)
        return second, cluster.wait_converged()

    try:
        second, digest = in_host(lab, "ctl", body)
    finally:
        cluster.close()
    assert second in cluster.masters and digest


def _reaches_m1(url: str) -> bool:
    """Whether m1 itself answers at ``url`` (this sandbox's root namespace may have a default
    route whose gateway answers anything: only m1's own answer counts)."""
    try:
        response = httpx.get(url + "/api/v1/cluster", timeout=2)
    except httpx.TransportError:
        return False
    return response.status_code == 200 and response.json().get("node_id") == "m1"


def test_only_the_lab_reaches_its_masters(lab: Lab, tmp_path: Path) -> None:
    lab.add_host("ctl")
    cluster = ChaosCluster(lab, tmp_path / "cluster", masters=1, workers=0, small_disk_master=None)
    try:
        in_host(lab, "ctl", cluster.start)
        assert in_host(lab, "ctl", lambda: _reaches_m1(cluster.urls[0]))
        assert not _reaches_m1(cluster.urls[0])
    finally:
        cluster.close()


def _submit(url: str) -> int | str:
    """POST one task on ``url``: its status code, or the transport error's name."""
    try:
        response = httpx.post(url + "/api/v1/tasks", json={"command": "true"}, timeout=5)
    except httpx.TransportError as exc:
        return type(exc).__name__
    return response.status_code


def test_a_full_disk_stops_that_masters_writes_and_free_restores_them(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add_host("ctl")
    cluster = ChaosCluster(
        lab, tmp_path / "cluster", masters=1, workers=0, small_disk_master="m1", disk_mib=16
    )

    def body() -> tuple[int | str, int | str]:
        cluster.start()
        url = cluster.urls[0]
        assert _submit(url) == 201
        assert cluster.fill_disk("m1") > 0
        refused = _submit(url)
        # The write that failed crashed the Raft driver, and the master exits (70) so that a
        # supervisor restarts it; the refusal can reach the client just before the exit.
        wait_for(lambda: "m1" in cluster.down(), EXIT_TIMEOUT_S, "m1 exited")
        proc = cluster.masters["m1"].proc
        assert proc is not None and proc.popen.returncode == 70
        cluster.free_disk("m1")
        cluster.restart("m1")
        cluster.wait_leader()
        return refused, _submit(url)

    try:
        refused, after = in_host(lab, "ctl", body)
    finally:
        cluster.close()
    assert refused != 201, "a master with a full disk acknowledged a write"
    assert after == 201
