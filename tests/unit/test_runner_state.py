"""A Python runner restores only what a call changed, and each call still starts from the
runner's own state: its environment (as the process sees it, children included), working
directory, ``sys.path`` and umask. A call's own ``env`` and ``cwd`` never reach the next."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from agentflow.config import WorkerConfig
from agentflow.worker import pyrunner
from agentflow.worker.environment import attempt_environment, inherited_environment
from agentflow.worker.pyexec import FunctionAttempt, PythonPool, function_request

MODULE = """
import os, subprocess, sys

def wander(tmp):
    os.environ["AF_ADDED"] = "added"
    os.environ["AF_BASE_CHANGED"] = "changed"
    del os.environ["AF_BASE_GONE"]
    os.chdir(tmp)
    os.umask(0o077)
    sys.path.insert(0, "/af-leaked-path")
    return "wandered"

def look():
    umask = os.umask(0)
    os.umask(umask)
    names = ("AF_ADDED", "AF_BASE_CHANGED", "AF_BASE_GONE", "AF_SPEC", "AGENTFLOW_TASK_ID",
             "AGENTFLOW_EXTRA")
    child = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    seen = dict(line.split("=", 1) for line in child.splitlines() if "=" in line)
    return {
        "env": {n: os.environ.get(n) for n in names},
        "child_env": {n: seen.get(n) for n in names},
        "cwd": os.getcwd(),
        "umask": umask,
        "path_leaked": "/af-leaked-path" in sys.path,
    }
"""

BASE = {"AF_BASE_CHANGED": "base", "AF_BASE_GONE": "still here", "AGENTFLOW_EXTRA": "inherited"}


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    root = tmp_path / "modules"
    root.mkdir()
    (root / "af_state.py").write_text(MODULE)
    return root


def _pool(modules: Path) -> PythonPool:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AF_")} | BASE
    return PythonPool(1, env | {"PYTHONPATH": str(modules)})


async def _call(pool: PythonPool, request: dict[str, Any]) -> Any:
    attempt = FunctionAttempt(
        task_id="t-1",
        token=1,
        pool=pool,
        request=request,
        timeout_s=20.0,
        on_output=lambda stream, data: None,
    )
    finished = await attempt.run()
    assert finished.status == "completed", finished.reason
    return json.loads(finished.result or "null")


async def test_a_reused_runner_undoes_whatever_the_call_before_changed(
    modules: Path, tmp_path: Path
) -> None:
    pool = _pool(modules)
    try:
        first = {"function": "af_state:wander", "args": [str(tmp_path)]}
        first["env"] = {"AGENTFLOW_TASK_ID": "t-1", "AF_SPEC": "one", "AF_BASE_GONE": "spec"}
        assert await _call(pool, first) == "wandered"
        second = await _call(pool, {"function": "af_state:look", "env": {}})
    finally:
        await pool.aclose()
    expected = {
        "AF_ADDED": None,
        "AF_BASE_CHANGED": "base",
        "AF_BASE_GONE": "still here",
        "AF_SPEC": None,
        "AGENTFLOW_TASK_ID": None,
        "AGENTFLOW_EXTRA": "inherited",
    }
    assert second["env"] == expected
    assert second["child_env"] == expected  # the process environment, not only os.environ
    assert second["cwd"] == os.getcwd()
    assert second["umask"] == _umask()
    assert not second["path_leaked"]


async def test_a_call_gets_the_attempts_variables_and_the_runners_inherited_ones(
    modules: Path, tmp_path: Path
) -> None:
    frame = {"task_id": "t-9", "token": 7, "spec": {"function": "af_state:look"}}
    config = WorkerConfig(worker_id="w-1")
    env, files = attempt_environment(frame, config, "http://m", tmp_path, {})
    request = function_request(frame["spec"], env, None)
    assert "AGENTFLOW_EXTRA" not in request["env"]  # the runner has it: not sent again
    pool = _pool(modules)
    try:
        seen = await _call(pool, request)
    finally:
        await pool.aclose()
        files.remove()
    assert seen["env"]["AGENTFLOW_TASK_ID"] == "t-9"
    assert seen["env"]["AGENTFLOW_EXTRA"] == "inherited"


def test_restore_puts_back_added_changed_and_deleted_variables(monkeypatch: Any) -> None:
    monkeypatch.setenv("AF_KEEP", "kept")
    monkeypatch.setenv("AF_GONE", "here")
    state = pyrunner.ProcessState.capture()
    os.environ["AF_KEEP"] = "changed"
    os.environ["AF_NEW"] = "new"
    del os.environ["AF_GONE"]
    state.restore()
    assert dict(os.environ) == state.env
    assert os.environ.get("AF_NEW") is None and os.environ["AF_GONE"] == "here"
    state.restore()  # nothing changed: nothing to do
    assert dict(os.environ) == state.env


def test_inherited_environment_leaves_out_the_workers_secrets(monkeypatch: Any) -> None:
    monkeypatch.setenv("AGENTFLOW_API_TOKEN", "worker-secret")
    monkeypatch.setenv("AF_VISIBLE", "yes")
    inherited = inherited_environment()
    assert "AGENTFLOW_API_TOKEN" not in inherited and inherited["AF_VISIBLE"] == "yes"


def _umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def test_an_attempts_files_are_removed_with_or_without_parents(tmp_path: Path) -> None:
    config = WorkerConfig(worker_id="w-1")
    with_parents = {"task_id": "t-1", "token": 2, "spec": {"command": "true"}, "parents": []}
    env, files = attempt_environment(with_parents, config, "http://m", tmp_path, {"A": "1"})
    assert env["A"] == "1" and Path(env["AGENTFLOW_PARENTS_FILE"]).exists()
    Path(env["AGENTFLOW_OUTPUT_FILE"]).write_text("written")
    files.remove()
    plain = {"task_id": "t-2", "token": 2, "spec": {"command": "true"}}
    env, files = attempt_environment(plain, config, "http://m", tmp_path, {})
    assert "AGENTFLOW_PARENTS_FILE" not in env
    Path(env["AGENTFLOW_OUTPUT_FILE"]).write_text("written")
    files.remove()
    assert list(tmp_path.iterdir()) == []
