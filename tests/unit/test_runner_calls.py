"""A Python call cancelled while it runs ends with its runner; one cancelled before it reaches
a runner never runs; the pool serves the next call with a fresh runner either way."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from agentflow.worker.executor import Finished
from agentflow.worker.pyexec import FunctionAttempt, PythonPool

MODULE = """
import pathlib, time

def linger(marker):
    pathlib.Path(marker).write_text("started")
    time.sleep(60)

def mark(marker):
    pathlib.Path(marker).write_text("ran")
    return "ran"
"""
WAIT_S = 20.0


@pytest.fixture
async def pool(tmp_path: Path) -> object:
    root = tmp_path / "modules"
    root.mkdir()
    (root / "af_calls.py").write_text(MODULE)
    pool = PythonPool(1, dict(os.environ) | {"PYTHONPATH": str(root)})
    yield pool
    await pool.aclose()


def _attempt(pool: PythonPool, function: str, marker: Path) -> FunctionAttempt:
    return FunctionAttempt(
        task_id="t-1",
        token=1,
        pool=pool,
        request={"function": function, "args": [str(marker)], "env": {}},
        timeout_s=WAIT_S * 3,
        on_output=lambda stream, data: None,
    )


async def _until(path: Path) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not path.exists():
        assert asyncio.get_running_loop().time() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.01)


async def test_a_cancel_ends_the_running_call_and_the_next_call_runs(
    pool: PythonPool, tmp_path: Path
) -> None:
    marker = tmp_path / "linger"
    attempt = _attempt(pool, "af_calls:linger", marker)
    running = asyncio.create_task(attempt.run())
    await _until(marker)
    attempt.cancel()
    finished = await asyncio.wait_for(running, WAIT_S)
    assert finished == Finished(status="cancelled", exit_code=None, reason="cancelled")
    after = await _attempt(pool, "af_calls:mark", tmp_path / "after").run()
    assert after.status == "completed" and json.loads(after.result or "") == "ran"


async def test_a_call_cancelled_before_it_reaches_a_runner_never_runs(
    pool: PythonPool, tmp_path: Path
) -> None:
    marker = tmp_path / "never"
    attempt = _attempt(pool, "af_calls:mark", marker)
    running = asyncio.create_task(attempt.run())
    await asyncio.sleep(0)  # run() is now starting a runner
    attempt.cancel()
    finished = await asyncio.wait_for(running, WAIT_S)
    assert finished.status == "cancelled"
    assert not marker.exists()
