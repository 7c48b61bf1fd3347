"""Python callables as tasks, end to end: values, tracebacks, timeouts, map, import errors."""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from agentflow import Client, TaskFailedError
from agentflow.errors import ClientError
from tests.e2e.procs import Processes, live_workers, wait_until

MODULE = """
from agentflow import task

def ident(x):
    return x

def add(a, b=0):
    print("adding", a, b)
    return {"sum": a + b}

def boom():
    raise ValueError("nope")

@task(timeout_s=1.0)
def spin():
    while True:
        pass
"""


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[ModuleType]:
    (tmp_path / "af_jobs.py").write_text(MODULE)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("af_jobs")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("af_jobs", None)


def _cluster(procs: Processes, tmp_path: Path) -> str:
    _, url = procs.master()
    procs.worker("py", url, "--slots", "2", env={"PYTHONPATH": str(tmp_path)})
    wait_until(lambda: live_workers(url) == 1)
    return url


def test_callable_returns_its_value_and_prints_to_its_output(
    procs: Processes, tmp_path: Path, jobs: ModuleType
) -> None:
    url = _cluster(procs, tmp_path)
    with Client(url) as client:
        future = client.submit(jobs.add, 2, b=40)
        assert future.result(timeout_s=20) == {"sum": 42}
        assert client.output(future.id)["stdout"] == "adding 2 40\n"
        assert future.info().raw["function"] == "af_jobs:add"
        assert [f.result(timeout_s=20) for f in client.map(jobs.ident, [1, "two", [3]])] == [
            1,
            "two",
            [3],
        ]


def test_exception_fails_the_task_with_its_traceback(
    procs: Processes, tmp_path: Path, jobs: ModuleType
) -> None:
    url = _cluster(procs, tmp_path)
    with Client(url) as client:
        future = client.submit(jobs.boom)
        with pytest.raises(TaskFailedError, match="ValueError: nope") as failed:
            future.result(timeout_s=20)
        assert "Traceback (most recent call last)" in failed.value.detail
        assert 'in boom\n    raise ValueError("nope")' in failed.value.detail
        stderr = client.output(future.id)["stderr"]
        assert "Traceback" in stderr and 'raise ValueError("nope")' in stderr


def test_timeout_kills_a_callable_stuck_in_a_loop(
    procs: Processes, tmp_path: Path, jobs: ModuleType
) -> None:
    url = _cluster(procs, tmp_path)
    with Client(url) as client:
        stuck = client.submit(jobs.spin)  # @task(timeout_s=1.0)
        info = client.wait(stuck.id, timeout_s=20)
        assert info.status == "timed_out"
        assert client.submit(jobs.ident, 7).result(timeout_s=20) == 7  # the pool recovered


def test_a_function_the_worker_cannot_import_fails_clearly(
    procs: Processes, tmp_path: Path
) -> None:
    url = _cluster(procs, tmp_path)
    with Client(url) as client:
        task = client.submit(function="no_such_module:run")
        info = client.wait(task.id, timeout_s=20)
    assert info.status == "failed"
    assert info.reason == (
        "cannot import no_such_module:run: ModuleNotFoundError: No module named 'no_such_module'"
    )


def test_a_call_that_cannot_be_pickled_is_refused_at_submit() -> None:
    """A function workers cannot import goes by value (tests/e2e/test_pickle_byvalue.py);
    one that cannot be pickled either is refused before anything is sent."""
    lock = threading.Lock()

    def local() -> None:
        with lock:
            pass

    with (
        Client("http://127.0.0.1:1") as client,
        pytest.raises(ClientError, match="cannot be sent by value: TypeError"),
    ):
        client.submit(local)
