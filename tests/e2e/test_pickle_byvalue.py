"""Functions sent by value, end to end: a real master, real workers, the real SDK.

A lambda, a closure, a function of a script's ``__main__`` travel pickled (cloudpickle) and
run only on a worker started with ``--allow-pickled-functions``; their values come back as
Python values. A workflow names callables directly and a child receives its parents' results
as Python values. The master keeps the pickle as text it never decodes, and refuses one over
its size limit with problem+json.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from agentflow import AsyncClient, Client
from agentflow.byvalue import MAX_PICKLED_CHARS
from agentflow.errors import PayloadTooLargeError, TimeoutExpiredError
from tests.e2e.procs import Processes, live_workers, wait_until

PROBLEM_JSON = "application/problem+json"
NEEDS_FLAG = "needs a worker with --allow-pickled-functions; no worker in group 'default' has it"

JOBS = """
def scale(x, factor=1):
    return x * factor

def report(parents):
    return {key: (type(value).__name__, value) for key, value in sorted(parents.items())}
"""


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[ModuleType]:
    """A module both this process and the workers (through PYTHONPATH) import by name."""
    (tmp_path / "pk_jobs.py").write_text(JOBS)
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("pk_jobs")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("pk_jobs", None)


def _cluster(
    procs: Processes, tmp_path: Path, *worker_flags: str, env: dict[str, str] | None = None
) -> str:
    _, url = procs.master()
    env = {"PYTHONPATH": str(tmp_path), **(env or {})}
    procs.worker("w1", url, "--slots", "2", *worker_flags, env=env)
    wait_until(lambda: live_workers(url) == 1, what="the worker to register")
    return url


def test_a_closure_and_a_lambda_run_by_value_and_give_python_values(
    procs: Processes, tmp_path: Path
) -> None:
    url = _cluster(procs, tmp_path, "--allow-pickled-functions")
    offset = 10

    def shifted(x: int) -> int:
        print("shifting", x)
        return x + offset

    with Client(url) as client:
        future = client.submit(shifted, 5)
        assert future.result(timeout_s=20) == 15
        info = future.info().raw
        assert info["function"] is None and info["args"] is None  # all of it in the pickle
        assert info["title"].endswith("shifted") and info["result_format"] == "pickle"
        assert 0 < info["pickled_chars"] <= MAX_PICKLED_CHARS
        assert client.output(future.id)["stdout"] == "shifting 5\n"
        squares = client.map(lambda x: (x, x * x), [1, 2, 3])
        assert [f.result(timeout_s=20) for f in squares] == [(1, 1), (2, 4), (3, 9)]  # tuples
        # Arguments that are not JSON go by value, with an importable function too.
        assert client.submit(abs, complex(3, 4)).result(timeout_s=20) == 5.0
        [worker] = client.workers()
        assert worker["pickled_functions"] is True


def test_without_the_flag_a_call_by_value_waits_with_a_reason_and_runs_nowhere(
    procs: Processes, tmp_path: Path, jobs: ModuleType
) -> None:
    url = _cluster(procs, tmp_path)  # no --allow-pickled-functions
    marker = tmp_path / "ran"

    def touch() -> None:
        marker.write_text("ran")

    with Client(url) as client:
        future = client.submit(touch)
        task_id = future.id
        wait_until(
            lambda: client.get(task_id).raw["unschedulable"] == NEEDS_FLAG,
            what="the unschedulable reason",
        )
        with pytest.raises(TimeoutExpiredError, match=f"still queued after 0.1s: it {NEEDS_FLAG}"):
            future.result(timeout_s=0.1)
        # Named by reference, the same worker runs functions as before.
        assert client.submit(jobs.scale, 2, factor=3).result(timeout_s=20) == 6
        info = client.get(task_id)
        assert info.status == "queued" and info.attempts == 0
        assert client.workers()[0]["pickled_functions"] is False
    assert not marker.exists()


def test_a_workflow_of_callables_hands_parents_results_as_python_values(
    procs: Processes, tmp_path: Path, jobs: ModuleType
) -> None:
    url = _cluster(procs, tmp_path, "--allow-pickled-functions")

    base = 4
    workflow = {
        "name": "callables",
        "tasks": [
            {"id": "pair", "function": lambda: (base, {"k": [1, 2]})},
            {"id": "scaled", "function": jobs.scale, "args": [7], "kwargs": {"factor": 3}},
            {"id": "shell", "command": "printf 'plain text' > \"$AGENTFLOW_OUTPUT_FILE\""},
            # Importable and JSON, but a parent was sent by value: it goes by value too.
            {"id": "report", "function": jobs.report, "dependencies": ["pair", "scaled"]},
            {
                "id": "join",
                "function": lambda parents, extra: (parents, extra),
                "kwargs": {"extra": "x"},
                "dependencies": ["pair", "scaled", "shell"],
            },
        ],
    }
    with Client(url) as client:
        view = client.submit_workflow(workflow)
        done = client.wait_workflow(view["id"], timeout_s=30)
        assert done["status"] == "completed", done
        ids = {t["key"]: t["id"] for t in done["tasks"]}
        assert client.result(ids["join"]) == (
            {"pair": (4, {"k": [1, 2]}), "scaled": 21, "shell": "plain text"},
            "x",
        )
        assert client.result(ids["report"]) == {
            "pair": ("tuple", (4, {"k": [1, 2]})),
            "scaled": ("int", 21),
        }
        assert client.get(ids["scaled"]).raw["function"] == "pk_jobs:scale"  # by reference
        assert client.get(ids["report"]).raw["result_format"] == "pickle"
        assert client.get(ids["join"]).title == "join"


async def test_the_async_client_sends_by_value_too(procs: Processes, tmp_path: Path) -> None:
    url = _cluster(procs, tmp_path, env={"AGENTFLOW_ALLOW_PICKLED_FUNCTIONS": "true"})
    words = {"a": "alpha"}
    async with AsyncClient(url) as client:
        assert await (await client.submit(lambda k: words[k], "a")) == "alpha"
        assert await asyncio.gather(*await client.map(lambda x: {x}, [1, 2])) == [{1}, {2}]
        view = await client.submit_workflow(
            {
                "tasks": [
                    {"id": "a", "function": lambda: ("x", 1)},
                    {"id": "b", "function": lambda parents: parents["a"], "dependencies": ["a"]},
                ]
            }
        )
        done = await client.wait_workflow(view["id"], timeout_s=30)
        assert done["status"] == "completed", done
        child = next(t["id"] for t in done["tasks"] if t["key"] == "b")
        assert await client.result(child, timeout_s=10) == ("x", 1)


def test_a_script_s_own_functions_run_by_value(procs: Processes, tmp_path: Path) -> None:
    """The case users meet first: functions defined in the script being run (``__main__``)."""
    url = _cluster(procs, tmp_path, "--allow-pickled-functions")
    script = tmp_path / "user_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from agentflow import AsyncClient, Client

            def cube(x):
                return x ** 3

            with Client({url!r}) as client:
                futures = client.map(cube, range(4))
                print([f.result(timeout_s=20) for f in futures])
            """
        )
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[0, 1, 8, 27]\n"


def test_the_size_limit_is_refused_at_submit_with_problem_json(procs: Processes) -> None:
    _, url = procs.master()
    too_big = "A" * (MAX_PICKLED_CHARS + 4)
    response = httpx.post(url + "/api/v1/tasks", json={"pickled": too_big}, timeout=30)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert f"over the limit of {MAX_PICKLED_CHARS}" in response.json()["detail"]
    workflow = {"tasks": [{"id": "a", "pickled": too_big}]}
    assert httpx.post(url + "/api/v1/workflows", json=workflow, timeout=30).status_code == 413
    ballast = bytes(range(256)) * 4096  # 1 MiB captured by the closure

    def heavy() -> int:
        return len(ballast)

    with Client(url) as client:
        with pytest.raises(PayloadTooLargeError, match="a closure may capture a large object"):
            client.submit(heavy)
        assert client.list() == []


AUDIT_HOOK = """
import os, sys

def _unpickled(event, args):
    if event == "pickle.find_class":  # raised by every unpickling that loads a global
        with open(os.environ["AF_UNPICKLE_LOG"], "a") as fh:
            fh.write(f"{args}\\n")

if os.environ.get("AF_UNPICKLE_LOG"):
    sys.addaudithook(_unpickled)
"""


def test_the_master_stores_a_pickle_it_never_decodes(
    procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payload whose unpickling would create a file, given to a master that records every
    unpickling in its process (an audit hook): stored, shown, placed, never decoded."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(AUDIT_HOOK)
    unpickled = tmp_path / "unpickle.log"
    with monkeypatch.context() as env:  # for the master only
        env.setenv("PYTHONPATH", str(hooks))
        env.setenv("AF_UNPICKLE_LOG", str(unpickled))
        _, url = procs.master()
    procs.worker("w1", url)  # one that may not unpickle either
    wait_until(lambda: live_workers(url) == 1, what="the worker to register")
    marker = tmp_path / "opened-by-unpickling"
    payload = _canary(marker)
    response = httpx.post(url + "/api/v1/tasks", json={"pickled": payload}, timeout=10)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    assert task["pickled_chars"] == len(payload) and "pickled" not in task
    workflow = {"tasks": [{"id": "a", "pickled": payload}, {"id": "b", "dependencies": ["a"]}]}
    assert httpx.post(url + "/api/v1/workflows", json=workflow, timeout=10).status_code == 201
    wait_until(
        lambda: httpx.get(f"{url}/api/v1/tasks/{task['id']}").json()["unschedulable"] == NEEDS_FLAG,
        what="the unschedulable reason",
    )
    _canary_works(tmp_path)
    assert not marker.exists()
    assert not unpickled.exists()


def _canary_works(tmp_path: Path) -> None:
    """The same hook and payload in a process that does unpickle: both fire."""
    log, marker = tmp_path / "probe.log", tmp_path / "probe-marker"
    code = f"import base64, pickle; pickle.loads(base64.b64decode({_canary(marker)!r}))"
    env = {"PYTHONPATH": str(tmp_path / "hooks"), "AF_UNPICKLE_LOG": str(log), "PATH": ""}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    assert marker.exists() and "('io', 'open')" in log.read_text()


class _Canary:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _canary(marker: Path) -> str:
    return base64.b64encode(pickle.dumps(_Canary(marker))).decode("ascii")
