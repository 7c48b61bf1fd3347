"""The chaos task body's exit codes and writes, run as a worker runs it, against a real storage
host."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentflow.testing.chaos.storage import StorageClient
from agentflow.testing.chaos.taskbody import (
    EXIT_FENCED,
    EXIT_OK,
    EXIT_RULE,
    EXIT_UNANSWERED,
    EXIT_USAGE,
)
from agentflow.testing.ports import free_port
from tests.chaos.work_hosts import start_storage
from tests.e2e.procs import Processes

BODY_TIMEOUT_S = 60.0


@pytest.fixture
def storage_url(tmp_path: Path) -> Iterator[str]:
    processes = Processes(tmp_path)
    try:
        yield start_storage(processes, tmp_path / "records.jsonl")[1]
    finally:
        processes.close()


def body(url: str, rule: str, task: str | None, attempt: int, token: int, *more: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    if task is not None:
        env |= {
            "AGENTFLOW_TASK_ID": task,
            "AGENTFLOW_ATTEMPT": str(attempt),
            "AGENTFLOW_FENCING_TOKEN": str(token),
        }
    argv = [sys.executable, "-m", "agentflow.testing.chaos.taskbody", "--storage", url]
    done = subprocess.run(
        [*argv, "--rule", rule, *more],
        check=False,
        env=env,
        timeout=BODY_TIMEOUT_S,
        capture_output=True,
    )
    return done.returncode


def writes(url: str, task: str) -> list[tuple[str, int, str, bool]]:
    with StorageClient(url) as storage:
        return [
            (r.writer, r.token, r.event, r.accepted)
            for r in storage.records()
            if r.stream == f"task:{task}"
        ]


def test_ok_writes_start_then_end_with_its_token_and_exits_0(storage_url: str) -> None:
    assert body(storage_url, "ok", "t1", 1, 4) == EXIT_OK
    assert writes(storage_url, "t1") == [("t1/1", 4, "start", True), ("t1/1", 4, "end", True)]


def test_fail_once_fails_the_first_attempt_only(storage_url: str) -> None:
    assert body(storage_url, "fail-once", "t2", 1, 1) == EXIT_RULE
    assert body(storage_url, "fail-once", "t2", 2, 2) == EXIT_OK
    assert writes(storage_url, "t2") == [
        ("t2/1", 1, "start", True),
        ("t2/2", 2, "start", True),
        ("t2/2", 2, "end", True),
    ]


def test_fail_always_fails_every_attempt(storage_url: str) -> None:
    assert [body(storage_url, "fail-always", "t3", n, n) for n in (1, 2)] == [EXIT_RULE] * 2
    assert [w[2] for w in writes(storage_url, "t3")] == ["start", "start"]


def test_an_attempt_fenced_off_by_a_newer_one_exits_3_without_an_end(storage_url: str) -> None:
    with StorageClient(storage_url) as storage:
        assert storage.write("task:t4", "t4/2", 9, "start")["accepted"]
    assert body(storage_url, "ok", "t4", 1, 5) == EXIT_FENCED
    assert writes(storage_url, "t4")[1:] == [("t4/1", 5, "start", False)]


def test_no_task_environment_is_a_usage_error(storage_url: str) -> None:
    assert body(storage_url, "ok", None, 1, 1) == EXIT_USAGE


def test_an_unreachable_storage_host_ends_the_attempt_with_4() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert body(url, "ok", "t5", 1, 1, "--deadline-s", "0.5") == EXIT_UNANSWERED
