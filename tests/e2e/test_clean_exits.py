"""Starting and stopping say one line, never a traceback: a master whose API or peer port is
taken, and a worker that ran Python functions when it is stopped."""

from __future__ import annotations

import os.path
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentflow.client import Client
from tests.e2e.procs import Processes, free_port, live_workers, wait_until
from tests.e2e.test_cli import run


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port with a listener on it for the whole test."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def assert_one_line(stderr: str, *parts: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    for part in parts:
        assert part in lines[0], stderr


def test_busy_api_port_is_one_line(busy_port: int, tmp_path: Path) -> None:
    done = run("master", "--port", str(busy_port), "--data-dir", str(tmp_path / "data"))
    assert done.returncode == 1
    assert_one_line(done.stderr, f"127.0.0.1:{busy_port}", "in use")


@pytest.mark.raft_only  # the Raft peer port
def test_busy_peer_port_is_one_line(busy_port: int, tmp_path: Path) -> None:
    done = run(
        "master",
        "--node-id",
        "m1",
        "--port",
        str(free_port()),
        "--raft-port",
        str(busy_port),
        "--cluster-token",
        "clean-exits-cluster-token-0123456789",
        "--peers",
        f"m2=127.0.0.1:{free_port()}",
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert done.returncode == 1
    assert_one_line(done.stderr, "peers", f"127.0.0.1:{busy_port}", "in use")


def test_worker_that_ran_functions_stops_quietly(procs: Processes) -> None:
    _, url = procs.master()
    worker = procs.worker("w1", url)
    wait_until(lambda: live_workers(url) == 1, 20, "the worker connected")
    with Client(url) as client:
        assert client.submit(os.path.join, "a", "b").result(timeout_s=30) == "a/b"
    assert worker.terminate() == 0
    log = worker.log()
    assert "Exception ignored" not in log, log
    assert "Traceback" not in log, log
    assert "Warning" not in log, log
