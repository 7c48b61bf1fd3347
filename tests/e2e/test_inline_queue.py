"""A worker's queue keeps priority order (issue 14): urgent work never waits behind a queued
low task; the master withdraws the low one, unstarted, and the urgent one runs next."""

from __future__ import annotations

from pathlib import Path

from agentflow import Client
from tests.e2e.procs import Processes, live_workers, wait_until


def test_one_slot_an_urgent_task_behind_a_queued_low_one_runs_next(
    procs: Processes, tmp_path: Path
) -> None:
    _, url = procs.master("m1")
    procs.worker("w1", url, "--slots", "1", "--prefetch", "1")
    wait_until(lambda: live_workers(url) == 1, what="w1 registered")
    order, go = tmp_path / "order.txt", tmp_path / "go"
    with Client(url) as client:
        first = client.submit(
            f"while [ ! -e {go} ]; do sleep 0.01; done; echo first >> {order}",
            priority="low",
            timeout_s=30,
        )
        wait_until(lambda: client.get(first.id).status == "running", what="first running")
        low = client.submit(f"echo low >> {order}", priority="low")
        wait_until(lambda: client.get(low.id).status == "assigned", what="low queued on w1")
        urgent = client.submit(f"echo urgent >> {order}", priority="urgent")
        assert client.get(urgent.id).status == "assigned"  # in its own submit's entry
        withdrawn = client.get(low.id)
        assert withdrawn.status == "queued"
        assert [a["status"] for a in withdrawn.raw["attempt_history"]] == ["withdrawn"]
        go.touch()
        for task in (first, urgent, low):
            assert client.wait(task.id, timeout_s=20).ok
        assert order.read_text().split() == ["first", "urgent", "low"]
        assert client.get(low.id).raw["retries"] == 0  # no retry spent
