"""A storage host as a real process, for the workload's tests (fixtures of their own, so that
they do not depend on the other chaos test files' conftest)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from agentflow.testing.ports import free_port
from tests.e2e.procs import STARTUP_TIMEOUT_S, Proc, Processes, wait_until


def start_storage(procs: Processes, records: Path, port: int | None = None) -> tuple[Proc, str]:
    """``python -m agentflow.testing.chaos.storage`` on 127.0.0.1; returns once it answers."""
    port = port or free_port()
    argv = [
        sys.executable,
        "-m",
        "agentflow.testing.chaos.storage",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--records",
        str(records),
    ]
    proc = Proc(argv, procs.root / f"storage-{port}.log")
    procs.procs.append(proc)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.alive(), proc.log()
        try:
            return httpx.get(url + "/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, STARTUP_TIMEOUT_S, f"storage host at {url}")
    return proc, url
