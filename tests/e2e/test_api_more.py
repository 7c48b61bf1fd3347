"""Priority changes, following output, queue statistics, metrics, worker drain over the API."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import httpx

from agentflow import Client
from tests.e2e.procs import Processes, live_workers, wait_until


def test_patch_priority_reorders_a_queued_task(procs: Processes) -> None:
    _, url = procs.master()
    with Client(url) as client:
        first = client.submit("true", priority="low")
        second = client.submit("true", priority="low")
        raised = client.set_priority(second.id, "urgent")
        assert raised.priority == "urgent"
        stats = client.queue_stats()
        assert stats["by_priority"] == {"urgent": 1, "high": 0, "medium": 0, "low": 1}
        assert stats["queued"] == 2 and stats["oldest_wait_s"] >= 0
        procs.worker("w1", url, "--slots", "1")
        assert client.wait(second.id, timeout_s=20).ok
        assert client.wait(first.id, timeout_s=20).ok
        started = [client.get(t).raw["started_at"] for t in (second.id, first.id)]
        assert started[0] <= started[1]
        response = httpx.patch(f"{url}/api/v1/tasks/{first.id}", json={"priority": "high"})
        assert response.status_code == 409  # only a waiting task can change priority
        assert client.queue_stats()["totals"]["completed"] == 2


def test_follow_streams_output_until_the_task_ends(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    with Client(url) as client:
        task = client.submit("for i in 1 2 3; do echo line$i; sleep 0.2; done")
        streamed = b"".join(client.follow(task.id))
        assert streamed == b"line1\nline2\nline3\n"
        assert client.get(task.id).ok


def test_metrics_and_health(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    wait_until(lambda: live_workers(url) == 1)
    with Client(url) as client:
        client.wait(client.submit("true").id, timeout_s=20)
        health = client.health()
    assert health["status"] == "ok" and health["role"] == "leader"
    text = httpx.get(url + "/metrics").text
    assert 'agentflow_tasks{status="completed"} 1.0' in text
    assert 'agentflow_tasks_events_total{event="submitted"} 1.0' in text
    assert "agentflow_free_slots" in text


def test_drain_over_the_api_stops_new_assignments(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url, "--slots", "2")
    wait_until(lambda: live_workers(url) == 1)
    with Client(url) as client:
        assert client.drain_worker("w1")["state"] == "draining"
        task = client.submit("true")
        assert client.wait(task.id, timeout_s=1).status == "queued"
        assert client.drain_worker("w1", drain=False)["state"] == "active"
        assert client.wait(task.id, timeout_s=20).ok
        refused = httpx.delete(f"{url}/api/v1/workers/nope")
        assert refused.status_code == 404


def test_prefetch_holds_extra_attempts_but_runs_one_per_slot(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url, "--slots", "1", "--prefetch", "2")
    wait_until(lambda: live_workers(url) == 1)
    with Client(url) as client:
        tasks = [client.submit("sleep 0.3") for _ in range(4)]
        wait_until(lambda: client.get(tasks[2].id).status == "assigned", 10, "prefetched")
        held = client.workers()[0]
        assert len(held["running"]) == 3 and held["prefetch"] == 2
        cancelled = client.cancel(tasks[2].id)  # assigned but waiting on the worker
        assert cancelled.status == "cancelled"
        for task in tasks:
            client.wait(task.id, timeout_s=20)
        done = [client.get(t.id) for t in tasks]
    assert [t.status for t in done] == ["completed", "completed", "cancelled", "completed"]
    assert done[2].raw["started_at"] is None  # it never ran
    spans = sorted((t.raw["started_at"], t.raw["finished_at"]) for t in done if t.ok)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start  # one slot: attempts never overlap


def test_gpu_task_lands_where_it_fits_and_unschedulable_clears(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("plain", url, "--slots", "2", "--resources", "gpu=0")
    procs.worker("gpu-1", url, "--slots", "2", "--resources", "gpu=1,licence=1")
    wait_until(lambda: live_workers(url) == 2)
    with Client(url) as client:
        gpu_task = client.submit("echo $AGENTFLOW_WORKER_ID", resources={"gpu": 1, "licence": 1})
        assert client.wait(gpu_task.id, timeout_s=20).worker_id == "gpu-1"
        big = client.submit("true", resources={"gpu": 2})
        wait_until(lambda: client.get(big.id).raw["unschedulable"] is not None, 10)
        assert client.get(big.id).raw["unschedulable"] == "needs gpu=2; largest worker has gpu=1"
        gpu_view = next(w for w in client.workers() if w["id"] == "gpu-1")
        assert gpu_view["resources"]["gpu"] == 1.0 and gpu_view["free"]["gpu"] == 1.0
        procs.worker("gpu-2", url, "--resources", "gpu=2")
        done = client.wait(big.id, timeout_s=20)
        assert done.ok and done.worker_id == "gpu-2"
        assert done.raw["unschedulable"] is None


def test_gpu_model_is_registered_and_a_lost_worker_leaves_the_registry(
    procs: Processes, tmp_path: Path
) -> None:
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho '0, NVIDIA H100 80GB HBM3, 81559'\n")
    fake.chmod(0o755)
    _, url = procs.master(
        "m1",
        None,
        "--worker-timeout",
        "1s",
        "--heartbeat-interval",
        "0.3s",
        "--lost-worker-retention",
        "1s",
    )
    worker = procs.worker("gpu-box", url, env={"PATH": f"{fake.parent}:{os.environ['PATH']}"})
    wait_until(lambda: live_workers(url) == 1)
    with Client(url) as client:
        [view] = client.workers()
        assert view["gpus"] == [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_mb": 81559}]
        assert view["resources"]["gpu"] == 1.0
        worker.kill9()
        wait_until(lambda: client.workers() == [], 15, "lost worker removed")
        departed = client.request("GET", "/api/v1/workers")["departed"]
        assert [d["id"] for d in departed] == ["gpu-box"]
