"""A worker's Python calls in a batch, seen from the worker (issue 14), without a master: the
assignments go in as the session would hand them over, and what the worker would report is
read from its outbox (no reporter runs, so nothing leaves it).

A withdrawn call of a batch that has not started is dropped without a report, like a queued
one; the others run and report; a newer assignment of the withdrawn task, sent while the
runner had not yet skipped it, runs after.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agentflow.config import WorkerConfig
from agentflow.worker.runtime import Worker

MODULE = """
import pathlib, time

def wait_for(marker, go):
    pathlib.Path(marker).write_text("started")
    while not pathlib.Path(go).exists():
        time.sleep(0.005)
    return "went"

def mark(marker):
    pathlib.Path(marker).write_text("ran")
    return "ran"
"""
WAIT_S = 20.0


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worker:
    root = tmp_path / "modules"
    root.mkdir()
    (root / "af_wbatch.py").write_text(MODULE)
    monkeypatch.setenv("PYTHONPATH", str(root))  # what the worker's runners inherit
    config = WorkerConfig(worker_id="w1", slots=1, runner_batch=4)
    return Worker(config, {"cpu": 1.0}, {})


def _frame(task_id: str, token: int, function: str, *args: str) -> dict[str, Any]:
    spec = {"function": f"af_wbatch:{function}", "args": list(args)}
    return {"t": "assign", "task_id": task_id, "token": token, "spec": spec, "order": 1.0}


async def _until(predicate: Any, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"never: {what}"
        await asyncio.sleep(0.01)


def _reported(worker: Worker) -> dict[tuple[str, int], str]:
    outbox = worker.outbox
    return {(o["task_id"], o["token"]): o["status"] for o in outbox.pending_outcomes()}


async def test_a_withdrawn_call_of_a_batch_is_dropped_unreported_and_its_new_attempt_runs(
    worker: Worker, tmp_path: Path
) -> None:
    go0, go1 = tmp_path / "go0", tmp_path / "go1"
    async with asyncio.TaskGroup() as group:
        worker._attempt_group = group
        worker._start(_frame("t0", 1, "wait_for", str(tmp_path / "t0"), str(go0)))
        await _until((tmp_path / "t0").exists, "t0 running")
        worker._start(_frame("b", 2, "wait_for", str(tmp_path / "b"), str(go1)))
        worker._start(_frame("c", 3, "mark", str(tmp_path / "c")))
        worker._start(_frame("d", 4, "mark", str(tmp_path / "d")))
        go0.touch()  # t0 ends: b, c and d go to the runner in one message; b waits
        await _until((tmp_path / "b").exists, "b running")
        worker._take_back("c", 3, "withdraw")
        worker._start(_frame("c", 5, "mark", str(tmp_path / "c")))  # the master's next attempt
        go1.touch()
        await _until(lambda: len(_reported(worker)) == 4, "every outcome")
        if worker._pool is not None:
            await worker._pool.aclose()
    assert _reported(worker) == {
        ("t0", 1): "completed",
        ("b", 2): "completed",
        ("d", 4): "completed",
        ("c", 5): "completed",
    }
    started = worker.outbox._started
    assert ("c", 3) not in started and ("c", 5) in started
    assert started.index(("d", 4)) < started.index(("c", 5))  # c's new attempt came after
    assert not worker._attempts
