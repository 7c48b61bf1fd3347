"""Finding 9: an agent prompt is always one argument; a reused Python runner starts clean.

Before the fix, ``{prompt}`` inside a template word was substituted as text, so a prompt could
become an option (``--model={prompt}``) or shell code (``sh -c 'printf %s {prompt}'``); a
Python runner kept the working directory and ``sys.path`` a call left behind; and any
importable module could be called.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.procs import BIN, Processes, live_workers, wait_until

WAIT_S = 20.0
HOSTILE = "--version $(touch pwned-sub); touch pwned-semi"

MODULE = """
import os, sys

def wander():
    os.chdir("/")
    os.environ["AF_LEAKED"] = "yes"
    sys.path.insert(0, "/af-leaked-path")
    return os.getcwd()

def where():
    return {
        "cwd": os.getcwd(),
        "leaked": os.environ.get("AF_LEAKED"),
        "path_leaked": "/af-leaked-path" in sys.path,
    }
"""

FORBIDDEN = """
import pathlib
pathlib.Path(__file__).with_name("forbidden-was-imported").write_text("yes")

def run():
    return "ran"
"""

pytestmark = pytest.mark.slow  # real master and worker processes


def _submit(url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(url + "/api/v1/tasks", json=body, timeout=WAIT_S)
    assert response.status_code == 201, response.text
    task_id = response.json()["id"]
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        view = httpx.get(
            f"{url}/api/v1/tasks/{task_id}", params={"wait_s": 5}, timeout=WAIT_S
        ).json()
        if view["status"] in ("completed", "failed", "timed_out", "cancelled"):
            return dict(view)
    raise AssertionError(f"task {task_id} did not finish in {WAIT_S}s")


def _stdout(url: str, task_id: str) -> str:
    body = httpx.get(f"{url}/api/v1/tasks/{task_id}/output", timeout=WAIT_S).json()
    return str(body["stdout"])


@pytest.mark.parametrize(
    "template",
    [
        "sh -c 'printf %s {prompt}'",  # shell text: the README promised it never is
        "prog --message={prompt}",  # an option's value: joins whatever option the prompt names
        "bash -c {prompt}",  # the prompt as the script itself
        "python3 -c {prompt}",
    ],
)
def test_template_where_the_prompt_is_not_one_argument_is_refused_at_start(
    template: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            str(BIN / "agentflow-worker"),
            "--worker-id",
            "w",
            "--master-url",
            "http://127.0.0.1:9",  # never reached: refused before connecting
            "--agent",
            f"bad={template}",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--agent bad:" in lines[0], done.stderr


def test_prompt_is_exactly_one_argument_and_never_shell_text(
    procs: Processes, tmp_path: Path
) -> None:
    _, url = procs.master()
    work = tmp_path / "work"
    work.mkdir()
    procs.worker(
        "agents",
        url,
        "--agent",
        "echo=printf %s {prompt}",  # printf %s joins several arguments without spaces
        "--agent",
        """shell=sh -c 'printf %s "$AGENTFLOW_PROMPT"'""",
    )
    wait_until(lambda: live_workers(url) == 1)
    for agent in ("echo", "shell"):
        view = _submit(url, {"agent": agent, "prompt": HOSTILE, "cwd": str(work)})
        assert view["status"] == "completed", view
        assert _stdout(url, view["id"]) == HOSTILE  # one argument, unchanged
    assert list(work.iterdir()) == []  # nothing of the prompt ran


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    root = tmp_path / "modules"
    root.mkdir()
    (root / "af_hygiene.py").write_text(MODULE)
    (root / "af_forbidden.py").write_text(FORBIDDEN)
    return root


def test_python_calls_start_clean_and_only_allowed_modules_run(
    procs: Processes, tmp_path: Path, modules: Path
) -> None:
    _, url = procs.master()
    own = tmp_path / "own"
    own.mkdir()
    procs.worker(
        "py",
        url,
        "--slots",
        "1",  # one runner, reused by every call
        "--function-modules",
        "af_hygiene,json.*",
        env={"PYTHONPATH": str(modules)},
    )
    wait_until(lambda: live_workers(url) == 1)
    _calls_start_clean(url, own)
    _only_allowed_modules_run(url, modules)


def _calls_start_clean(url: str, own: Path) -> None:
    first = _submit(url, {"function": "af_hygiene:wander"})
    assert first["status"] == "completed" and json.loads(first["result"]) == "/"
    in_own = _submit(url, {"function": "af_hygiene:where", "cwd": str(own)})
    assert json.loads(in_own["result"]) == {"cwd": str(own), "leaked": None, "path_leaked": False}
    _submit(url, {"function": "af_hygiene:wander"})
    default = _submit(url, {"function": "af_hygiene:where"})
    assert json.loads(default["result"])["cwd"] == os.getcwd()  # the worker's, not "/"


def _only_allowed_modules_run(url: str, modules: Path) -> None:
    refused = _submit(url, {"function": "af_forbidden:run"})
    assert refused["status"] == "failed"
    assert "not allowed on this worker" in refused["reason"]
    assert not (modules / "forbidden-was-imported").exists()
    allowed = _submit(url, {"function": "json:dumps", "args": [[1]]})
    assert allowed["status"] == "completed" and json.loads(allowed["result"]) == "[1]"
