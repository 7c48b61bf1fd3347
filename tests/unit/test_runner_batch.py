"""Several Python calls sent to one runner in one message (issue 14): they run in order, each
from the runner's own state; a call not started can be stopped; a call counts as started when
the answer before it arrives; a kill ends the running call and sends the calls that had not
started back to the worker, never reported as started.

Some races are forced by blocking the event loop (``_block_until``): the runner, another
process, goes on while the worker side cannot read its answers yet.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import pickle
import time
from pathlib import Path

import pytest

from agentflow.client._functions import function_body
from agentflow.worker.executor import Finished
from agentflow.worker.pyexec import CallBatch, FunctionAttempt, PythonPool, function_request

MODULE = """
import os, pathlib, time

def mark(marker):
    pathlib.Path(marker).write_text("ran")
    return "ran"

def wait_for(marker, go):
    pathlib.Path(marker).write_text("started")
    while not pathlib.Path(go).exists():
        time.sleep(0.005)
    return "went"

def linger(marker):
    pathlib.Path(marker).write_text("started")
    time.sleep(60)

def set_env(name):
    os.environ[name] = "leaked"
    os.chdir("/")
    return os.environ[name]

def get_env(name):
    return [os.environ.get(name), os.getcwd()]

def parents_of(parents):
    return parents
"""
WAIT_S = 20.0


class Events:
    """What the batch told the worker, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, str]] = []

    def started(self, attempt: FunctionAttempt) -> None:
        self.log.append(("started", attempt.task_id, ""))

    def settled(self, attempt: FunctionAttempt, finished: Finished) -> None:
        result = json.loads(finished.result) if finished.result else None
        self.log.append(("settled", attempt.task_id, f"{finished.status}:{result}"))

    def unstarted(self, attempt: FunctionAttempt, why: str) -> None:
        self.log.append(("unstarted", attempt.task_id, why))

    def of(self, task_id: str) -> list[tuple[str, str]]:
        return [(kind, what) for kind, task, what in self.log if task == task_id]


@pytest.fixture
async def pool(tmp_path: Path) -> object:
    root = tmp_path / "modules"
    root.mkdir()
    (root / "af_batch.py").write_text(MODULE)
    pool = PythonPool(1, dict(os.environ) | {"PYTHONPATH": str(root)})
    yield pool
    await pool.aclose()


def _call(
    pool: PythonPool, task_id: str, function: str, *args: str, timeout_s: float = WAIT_S * 3
) -> FunctionAttempt:
    return FunctionAttempt(
        task_id=task_id,
        token=1,
        pool=pool,
        request={"function": function, "args": list(args), "env": {}},
        timeout_s=timeout_s,
        on_output=lambda stream, data: None,
    )


def _batch(pool: PythonPool, calls: list[FunctionAttempt], events: Events) -> CallBatch:
    return CallBatch(
        pool,
        calls,
        started=events.started,
        settled=events.settled,
        unstarted=events.unstarted,
    )


async def _until(path: Path) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not path.exists():
        assert asyncio.get_running_loop().time() < deadline, f"{path} never appeared"
        await asyncio.sleep(0.01)


async def _sent(batch: CallBatch) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not batch.sent:
        assert asyncio.get_running_loop().time() < deadline, "the batch was never sent"
        await asyncio.sleep(0)


def _block_until(path: Path) -> None:
    """Wait without yielding to the event loop: the worker side reads nothing meanwhile."""
    deadline = time.monotonic() + WAIT_S
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


async def test_calls_run_in_order_each_from_the_runners_own_state(
    pool: PythonPool, tmp_path: Path
) -> None:
    events = Events()
    calls = [
        _call(pool, "a", "af_batch:set_env", "AF_BATCH_LEAK"),
        _call(pool, "b", "af_batch:get_env", "AF_BATCH_LEAK"),
        _call(pool, "c", "af_batch:mark", str(tmp_path / "c")),
    ]
    await asyncio.wait_for(_batch(pool, calls, events).run(), WAIT_S)
    # The first call's start is the worker's to report (at launch); each later one's start is
    # reported once the answer before it has arrived, then its own answer.
    assert events.log == [
        ("settled", "a", "completed:leaked"),
        ("started", "b", ""),
        ("settled", "b", f"completed:{[None, os.getcwd()]}"),
        ("started", "c", ""),
        ("settled", "c", "completed:ran"),
    ]
    assert all(call.batch is None for call in calls)


async def test_a_call_stopped_before_it_starts_never_runs(pool: PythonPool, tmp_path: Path) -> None:
    events = Events()
    first, go = tmp_path / "first", tmp_path / "go"
    calls = [
        _call(pool, "a", "af_batch:wait_for", str(first), str(go)),
        _call(pool, "b", "af_batch:mark", str(tmp_path / "b")),
        _call(pool, "c", "af_batch:mark", str(tmp_path / "c")),
    ]
    batch = _batch(pool, calls, events)
    running = asyncio.create_task(batch.run())
    await _until(first)
    assert batch.skip(calls[1], "withdraw")  # "a" runs: "b" has not started
    assert not batch.skip(calls[0], "withdraw")  # the running call is not stopped: it is killed
    go.touch()
    await asyncio.wait_for(running, WAIT_S)
    assert events.of("b") == [("unstarted", "withdraw")]
    assert not (tmp_path / "b").exists()
    assert events.of("c") == [("started", ""), ("settled", "completed:ran")]


async def test_a_stop_that_comes_after_the_call_started_lets_its_outcome_go_out(
    pool: PythonPool, tmp_path: Path
) -> None:
    """The fencing case: the worker stops "b" before it has read the answer to "a", but the
    runner had already started "b": "b"'s start and outcome go out with its token (for a
    withdrawn attempt the master refuses them)."""
    events = Events()
    second, go = tmp_path / "second", tmp_path / "go"
    calls = [
        _call(pool, "a", "af_batch:mark", str(tmp_path / "a")),
        _call(pool, "b", "af_batch:wait_for", str(second), str(go)),
    ]
    batch = _batch(pool, calls, events)
    running = asyncio.create_task(batch.run())
    await _sent(batch)
    _block_until(second)  # "b" runs, and the worker has not read "a"'s answer yet
    assert batch.skip(calls[1], "withdraw")
    go.touch()
    await asyncio.wait_for(running, WAIT_S)
    assert events.of("b") == [("started", ""), ("settled", "completed:went")]


async def test_a_cancel_of_the_running_call_sends_the_rest_back_unstarted(
    pool: PythonPool, tmp_path: Path
) -> None:
    events = Events()
    first = tmp_path / "first"
    calls = [
        _call(pool, "a", "af_batch:linger", str(first)),
        _call(pool, "b", "af_batch:mark", str(tmp_path / "b")),
        _call(pool, "c", "af_batch:mark", str(tmp_path / "c")),
    ]
    running = asyncio.create_task(_batch(pool, calls, events).run())
    await _until(first)
    calls[0].cancel()
    await asyncio.wait_for(running, WAIT_S)
    assert events.log == [
        ("settled", "a", "cancelled:None"),
        ("unstarted", "b", "requeue"),
        ("unstarted", "c", "requeue"),
    ]
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


async def test_a_timeout_kills_the_runner_and_the_rest_go_back(
    pool: PythonPool, tmp_path: Path
) -> None:
    events = Events()
    calls = [
        _call(pool, "a", "af_batch:mark", str(tmp_path / "a")),
        _call(pool, "b", "af_batch:linger", str(tmp_path / "b"), timeout_s=0.3),
        _call(pool, "c", "af_batch:mark", str(tmp_path / "c")),
    ]
    await asyncio.wait_for(_batch(pool, calls, events).run(), WAIT_S)
    assert events.of("b") == [("started", ""), ("settled", "timed_out:None")]
    assert events.of("c") == [("unstarted", "requeue")]


async def test_a_kill_counts_what_the_runner_had_already_answered_and_started(
    pool: PythonPool, tmp_path: Path
) -> None:
    """The worker cancels "a" while the runner has already answered it and started "b": "b"
    is not sent back (it would run twice under one token), it ends failed, started; "c" had
    not started and goes back."""
    events = Events()
    second = tmp_path / "second"
    calls = [
        _call(pool, "a", "af_batch:mark", str(tmp_path / "a")),
        _call(pool, "b", "af_batch:linger", str(second)),
        _call(pool, "c", "af_batch:mark", str(tmp_path / "c")),
    ]
    batch = _batch(pool, calls, events)
    running = asyncio.create_task(batch.run())
    await _sent(batch)
    _block_until(second)  # "a" is answered, unread; "b" runs
    calls[0].cancel()
    await asyncio.wait_for(running, WAIT_S)
    assert events.of("a") == [("settled", "cancelled:None")]
    assert events.of("b") == [("started", ""), ("settled", "failed:None")]
    assert events.of("c") == [("unstarted", "requeue")]
    assert not (tmp_path / "c").exists()


async def test_calls_less_urgent_than_an_arrival_yield(pool: PythonPool, tmp_path: Path) -> None:
    events = Events()
    first, go = tmp_path / "first", tmp_path / "go"
    calls = [
        _call(pool, "a", "af_batch:wait_for", str(first), str(go)),
        _call(pool, "b", "af_batch:mark", str(tmp_path / "b")),
        _call(pool, "c", "af_batch:mark", str(tmp_path / "c")),
        _call(pool, "d", "af_batch:mark", str(tmp_path / "d")),
    ]
    calls[1].order, calls[2].order, calls[3].order = 1.0, 5.0, 5.0
    batch = _batch(pool, calls, events)
    running = asyncio.create_task(batch.run())
    await _until(first)
    assert batch.yield_to(3.0) == 2  # more urgent than "c" and "d", not than "b"
    assert batch.skip(calls[3], "withdraw")  # then "d" is withdrawn: forgotten, not requeued
    go.touch()
    await asyncio.wait_for(running, WAIT_S)
    assert events.of("b") == [("started", ""), ("settled", "completed:ran")]
    assert events.of("c") == [("unstarted", "yield")]  # back to the worker's queue
    assert events.of("d") == [("unstarted", "withdraw")]
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


async def test_a_call_cancelled_in_its_batch_before_it_starts_is_settled_cancelled(
    pool: PythonPool, tmp_path: Path
) -> None:
    events = Events()
    first, go = tmp_path / "first", tmp_path / "go"
    calls = [
        _call(pool, "a", "af_batch:wait_for", str(first), str(go)),
        _call(pool, "b", "af_batch:mark", str(tmp_path / "b")),
    ]
    running = asyncio.create_task(_batch(pool, calls, events).run())
    await _until(first)
    calls[1].cancel()  # the worker's own cancel: a stop, not a kill
    go.touch()
    await asyncio.wait_for(running, WAIT_S)
    assert events.of("a") == [("settled", "completed:went")]
    assert events.of("b") == [("unstarted", "cancel")]
    assert not (tmp_path / "b").exists()


async def test_a_batch_carries_parents_values_and_calls_sent_by_value(tmp_path: Path) -> None:
    root = tmp_path / "modules"
    root.mkdir()
    (root / "af_batch.py").write_text(MODULE)
    pool = PythonPool(1, dict(os.environ) | {"PYTHONPATH": str(root)}, allow_pickled=True)
    parents = [{"id": "p1", "status": "completed", "result": "42", "result_format": "json"}]
    by_name = _call(pool, "a", "af_batch:parents_of")
    by_name._request["parents"] = parents
    by_value = _call(pool, "b", "unused:unused")
    by_value._request = function_request(function_body(lambda x: x * 2, (21,), {}), {}, None)
    finished: dict[str, Finished] = {}
    batch = CallBatch(
        pool,
        [by_name, by_value],
        started=lambda attempt: None,
        settled=lambda attempt, done: finished.__setitem__(attempt.task_id, done),
        unstarted=lambda attempt, why: None,
    )
    try:
        await asyncio.wait_for(batch.run(), WAIT_S)
    finally:
        await pool.aclose()
    assert json.loads(finished["a"].result or "") == {"p1": 42}
    assert pickle.loads(base64.b64decode(finished["b"].result or "")) == 42
