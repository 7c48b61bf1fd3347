"""Real master and worker processes on 127.0.0.1 for end-to-end tests.

Each process gets a free port and its own directory; everything started is killed (process
group and all) when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], object], timeout_s: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what or predicate}")


class Proc:
    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill9(self) -> None:
        """SIGKILL the process only (its children, like a crashed machine's, are separate)."""
        if self.alive():
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)

    def terminate(self, timeout_s: float = 15.0) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class Processes:
    """Starts masters and workers; ``close()`` kills them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []

    def master(
        self,
        name: str = "m1",
        port: int | None = None,
        *extra: str,
        data_dir: Path | None = None,
        raft_port: int | None = None,
    ) -> tuple[Proc, str]:
        port = port or free_port()
        data = data_dir or self.root / f"{name}-data"
        argv = [
            str(BIN / "agentflow-master"),
            "--node-id",
            name,
            "--port",
            str(port),
            "--data-dir",
            str(data),
            "--raft-port",
            str(raft_port or free_port()),
            "--log-level",
            "warning",
            *extra,
        ]
        proc = Proc(argv, self.root / f"{name}.log")
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url, proc), STARTUP_TIMEOUT_S, f"master {name} at {url}")
        return proc, url

    def worker(self, name: str, url: str, *extra: str, env: dict[str, str] | None = None) -> Proc:
        argv = [
            str(BIN / "agentflow-worker"),
            "--worker-id",
            name,
            "--master-url",
            url,
            "--log-level",
            "warning",
            *extra,
        ]
        proc = Proc(argv, self.root / f"{name}.log", env=env)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def _healthy(url: str, proc: Proc) -> bool:
    if not proc.alive():
        raise AssertionError(f"process exited with {proc.popen.returncode}:\n{proc.log()}")
    try:
        return httpx.get(url + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def live_workers(url: str) -> int:
    workers = httpx.get(url + "/api/v1/workers", timeout=5).json()["workers"]
    return sum(1 for w in workers if w["state"] in ("active", "busy"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); look at its state.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
