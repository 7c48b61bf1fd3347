"""What every benchmark shares: a throwaway cluster on loopback, figures, and clean exits.

:class:`LocalCluster` starts one master and N workers as real processes (the installed
``agentflow-master`` / ``agentflow-worker`` commands of this virtualenv) on 127.0.0.1, each
on a free port, with a temporary data directory; it stops them and deletes the directory on
every exit path: normal return, exception, Ctrl-C, SIGTERM. Children also get SIGKILL from the
kernel if the benchmark process itself dies (``PR_SET_PDEATHSIG``), so nothing is left behind.

Figures are printed one per line, ``<bench> <metric>=<value> [target<=X|target>=X MET|NOT MET]``,
so that ``run_all.py`` (and grep) can read them.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil

__all__ = [
    "LocalCluster",
    "ProcessStats",
    "bench_args",
    "deadline_guard",
    "figure",
    "free_port",
    "percentile",
    "run_main",
    "sigterm_raises",
]

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 8.0
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(q / 100.0 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def figure(
    bench: str,
    metric: str,
    value: float,
    *,
    target: float | None = None,
    higher_is_better: bool = True,
    fmt: str = "{:.1f}",
) -> None:
    """Print one figure line; with a target, append ``MET`` or ``NOT MET``."""
    line = f"{bench} {metric}={fmt.format(value)}"
    if target is not None:
        op = ">=" if higher_is_better else "<="
        met = value >= target if higher_is_better else value <= target
        line += f" target{op}{target:g} {'MET' if met else 'NOT MET'}"
    print(line, flush=True)


def bench_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="about 10x smaller, for smoke runs")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="run the master and workers under cProfile; .prof files are written to DIR",
    )
    parser.add_argument("--keep-logs", action="store_true", help="print process logs at the end")
    return parser.parse_args()


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def sigterm_raises() -> None:
    """Turn SIGTERM (e.g. from run_all's timeout) into KeyboardInterrupt, so cleanup runs."""
    signal.signal(signal.SIGTERM, _raise_interrupt)


def run_main(bench: str, body: Callable[[], None]) -> int:
    """Run a benchmark's body; an error becomes one ``<bench> ERROR ...`` line and status 1,
    Ctrl-C or SIGTERM status 130. Clusters are stopped by their ``with`` blocks in ``body``."""
    sigterm_raises()
    try:
        body()
    except KeyboardInterrupt:
        print(f"{bench} INTERRUPTED", flush=True)
        return 130
    except Exception as exc:
        print(f"{bench} ERROR {type(exc).__name__}: {exc}", flush=True)
        return 1
    return 0


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the benchmark process goes away."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _clean_env() -> dict[str, str]:
    """The environment without AGENTFLOW_* settings that would change what we measure."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class ProcessStats:
    """CPU seconds and RSS of one process at one moment."""

    name: str
    cpu_s: float  # the process itself
    children_cpu_s: float  # its waited-for children (the task processes of a worker)
    rss_mb: float


@dataclass
class _Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    ps: psutil.Process = field(init=False)

    def __post_init__(self) -> None:
        self.ps = psutil.Process(self.proc.pid)

    def stats(self) -> ProcessStats:
        cpu = self.ps.cpu_times()
        return ProcessStats(
            self.name,
            cpu.user + cpu.system,
            cpu.children_user + cpu.children_system,
            self.ps.memory_info().rss / 2**20,
        )

    def log_tail(self, limit: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


class LocalCluster:
    """One master and ``workers`` workers (``slots`` each) on loopback, torn down on exit.

    >>> with LocalCluster(workers=2, slots=1) as cluster:
    ...     client = cluster.client()
    """

    def __init__(
        self,
        *,
        workers: int = 0,
        slots: int = 1,
        prefetch: int = 0,
        profile_dir: Path | None = None,
        name: str = "bench",
    ) -> None:
        self.n_workers = workers
        self.slots = slots
        self.prefetch = prefetch
        self.profile_dir = profile_dir.resolve() if profile_dir else None
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"agentflow-{name}-"))
        self.master: _Child | None = None
        self.workers: list[_Child] = []

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            # The processes' own account of what went wrong, before their files are deleted.
            print(self.logs(), file=sys.stderr, flush=True)
        self.stop()

    def start(self) -> None:
        self.master = self._spawn(
            "master",
            "agentflow-master",
            [
                "--node-id",
                f"{self.name}-m1",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(self.tmp / "data"),
                "--raft-port",
                str(free_port()),
                "--log-level",
                "warning",
            ],
        )
        self._wait_healthy()
        for i in range(self.n_workers):
            self.workers.append(
                self._spawn(
                    f"worker{i + 1}",
                    "agentflow-worker",
                    [
                        "--worker-id",
                        f"{self.name}-w{i + 1}",
                        "--master-url",
                        self.url,
                        "--slots",
                        str(self.slots),
                        "--prefetch",
                        str(self.prefetch),
                        "--log-level",
                        "warning",
                    ],
                )
            )
        if self.n_workers:
            self._wait_workers()

    def _spawn(self, name: str, command: str, args: list[str]) -> _Child:
        log_path = self.tmp / f"{name}.log"
        argv = [str(VENV_BIN / command), *args]
        if self.profile_dir is not None:
            self.profile_dir.mkdir(parents=True, exist_ok=True)
            # cProfile writes its file when the process exits normally (SIGINT/SIGTERM do).
            module = "agentflow.cli"
            entry = "master_main" if command == "agentflow-master" else "worker_main"
            code = (
                "import sys, cProfile; import " + module + " as m; "
                f"cProfile.run('m.{entry}()', {str(self.profile_dir / (name + '.prof'))!r})"
            )
            argv = [sys.executable, "-c", code, *args]
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
                cwd=self.tmp,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, safe before exec
            )
        return _Child(name, proc, log_path)

    def _wait_healthy(self) -> None:
        assert self.master is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.master.proc.poll() is not None:
                raise RuntimeError(f"master exited at start:\n{self.master.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(
            f"master not healthy after {START_TIMEOUT_S}s:\n{self.master.log_tail()}"
        )

    def _wait_workers(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for w in self.workers:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"{w.name} exited at start:\n{w.log_tail()}")
            answer = httpx.get(self.url + "/api/v1/workers", timeout=2.0).json()
            live = [w for w in answer["workers"] if w["state"] in ("active", "busy")]
            if len(live) >= self.n_workers:
                return
            time.sleep(0.05)
        raise RuntimeError(f"workers did not register within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        """Stop workers (SIGTERM, they drain), then the master; SIGKILL what lingers."""
        children = [*self.workers, *([self.master] if self.master else [])]
        # uvicorn re-raises SIGTERM after its shutdown, which kills the process before cProfile
        # writes its file; SIGINT ends as KeyboardInterrupt, and cProfile still writes.
        sig = signal.SIGINT if self.profile_dir is not None else signal.SIGTERM
        for group in (self.workers, [self.master] if self.master else []):
            for child in group:
                if child.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        child.proc.send_signal(sig)
            deadline = time.monotonic() + STOP_GRACE_S
            for child in group:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for child in children:
            if child.proc.poll() is None:
                child.proc.kill()
                child.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- observing --------------------------------------------------------------------------

    def processes(self) -> list[_Child]:
        return [*([self.master] if self.master else []), *self.workers]

    def stats(self) -> dict[str, ProcessStats]:
        return {c.name: c.stats() for c in self.processes()}

    def check_alive(self) -> None:
        for child in self.processes():
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} died:\n{child.log_tail()}")

    def logs(self) -> str:
        return "\n".join(f"--- {c.name} ---\n{c.log_tail()}" for c in self.processes())

    def client(self, timeout_s: float = 60.0) -> Any:
        from agentflow import Client

        return Client(self.url, timeout_s=timeout_s, retries=2)


@contextlib.contextmanager
def deadline_guard(seconds: float, what: str) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the block runs past ``seconds``."""

    def _expired(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"{what} ran past {seconds:g}s")

    old = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
