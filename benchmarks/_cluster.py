"""What every benchmark shares: a throwaway cluster on loopback, figures, and clean exits.

:class:`LocalCluster` starts one master (or ``masters=3``/``5``, a Raft group) and N workers as
real processes (the installed ``agentflow-master`` / ``agentflow-worker`` commands of this
virtualenv) on 127.0.0.1, each on a free port, with a temporary data directory; it stops them
and deletes the directory on every exit path: normal return, exception, Ctrl-C, SIGTERM.
Children also get SIGKILL from the kernel if the benchmark process itself dies
(``PR_SET_PDEATHSIG``), so nothing is left behind.

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
import statistics
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

from agentflow.testing.ports import free_port

__all__ = [
    "LocalCluster",
    "ProcessStats",
    "bench_args",
    "deadline_guard",
    "disk_figures",
    "figure",
    "free_port",
    "latency_figures",
    "masters_suffix",
    "percentile",
    "report_latency",
    "run_main",
    "sigterm_raises",
]

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 30.0
STOP_GRACE_S = 8.0
_PR_SET_PDEATHSIG = 1


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


def latency_figures(prefix: str, samples_ms: list[float], suffix: str = "") -> dict[str, float]:
    """``<prefix>_{p50,p99,mean,max}_ms<suffix>`` of ``samples_ms`` (sorted in place)."""
    samples_ms.sort()
    return {
        f"{prefix}_p50_ms{suffix}": percentile(samples_ms, 50),
        f"{prefix}_p99_ms{suffix}": percentile(samples_ms, 99),
        f"{prefix}_mean_ms{suffix}": statistics.fmean(samples_ms),
        f"{prefix}_max_ms{suffix}": samples_ms[-1],
    }


def report_latency(
    bench: str,
    prefix: str,
    samples_ms: list[float],
    suffix: str = "",
    *,
    target_p50: float | None = None,
    target_p99: float | None = None,
) -> None:
    """Print :func:`latency_figures` (lower is better; the targets go on the p50 and p99
    lines) and ``<prefix>_samples<suffix>``. No samples is an error."""
    if not samples_ms:
        raise RuntimeError(f"{prefix}{suffix}: no samples")
    targets = {
        f"{prefix}_p50_ms{suffix}": target_p50,
        f"{prefix}_p99_ms{suffix}": target_p99,
    }
    for key, value in latency_figures(prefix, samples_ms, suffix).items():
        figure(bench, key, value, target=targets.get(key), higher_is_better=False, fmt="{:.2f}")
    figure(bench, f"{prefix}_samples{suffix}", len(samples_ms), fmt="{:.0f}")


def disk_figures(bench: str, samples: int = 50) -> None:
    """Print this disk's fsync latency (every acknowledged command waits for at least one; on
    a virtual disk it dominates and drifts) and the load average (the machine is shared)."""
    with tempfile.TemporaryDirectory(prefix="agentflow-fsync-") as tmp:
        fd = os.open(os.path.join(tmp, "probe"), os.O_WRONLY | os.O_CREAT)
        try:
            samples_ms = []
            for _ in range(samples):
                os.write(fd, b"x" * 512)
                start = time.perf_counter()
                os.fsync(fd)
                samples_ms.append((time.perf_counter() - start) * 1000)
        finally:
            os.close(fd)
    samples_ms.sort()
    figure(bench, "env_fsync_p50_ms", percentile(samples_ms, 50), fmt="{:.2f}")
    figure(bench, "env_fsync_p99_ms", percentile(samples_ms, 99), fmt="{:.2f}")
    figure(bench, "env_loadavg_1m", os.getloadavg()[0], fmt="{:.2f}")


def bench_args(description: str, *, store: bool = False) -> argparse.Namespace:
    """The flags every benchmark takes; ``store``: also ``--store sqlite|postgresql|mysql``
    (the masters' log; see ``_stores.py``)."""
    parser = argparse.ArgumentParser(description=description)
    if store:
        parser.add_argument(
            "--store",
            choices=("sqlite", "postgresql", "mysql"),
            default="sqlite",
            help="the masters' log: embedded Raft (sqlite) or a throwaway SQL server",
        )
    parser.add_argument("--quick", action="store_true", help="about 10x smaller, for smoke runs")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        type=Path,
        help="run the master and workers under cProfile; .prof files are written to DIR",
    )
    parser.add_argument("--keep-logs", action="store_true", help="print process logs at the end")
    parser.add_argument(
        "--masters",
        type=int,
        default=1,
        choices=(1, 3, 5),
        help="masters in the cluster (a Raft group when > 1); figures get an _<N>m suffix",
    )
    return parser.parse_args()


def masters_suffix(masters: int) -> str:
    """``""`` for one master (the historical figure names), else ``_3m``, ``_5m``."""
    return "" if masters == 1 else f"_{masters}m"


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
    """``masters`` masters and ``workers`` workers (``slots`` each) on loopback, torn down on
    exit.

    >>> with LocalCluster(workers=2, slots=1) as cluster:
    ...     client = cluster.client()

    With ``masters > 1`` each master gets its own API port, Raft port and data directory, and
    ``--peers`` naming the others (with ``store_url``, a SQL database, they all get
    ``--store`` instead and share it: one writes, the others follow); :meth:`start` returns
    once every master knows the same leader and a write went through. ``url`` is then the
    first master's URL (any master serves any request: followers forward writes), ``urls``
    all of them, and workers and :meth:`client` get the comma-separated list, so they follow
    the leader.
    :meth:`kill_master` / :meth:`restart_master` are for failover measurements.
    """

    def __init__(
        self,
        *,
        workers: int = 0,
        slots: int = 1,
        prefetch: int = -1,  # the worker's default: a queue sized from measured duration
        masters: int = 1,
        profile_dir: Path | None = None,
        name: str = "bench",
        worker_env: dict[str, str] | None = None,
        store_url: str | None = None,
        master_args: Sequence[str] = (),
    ) -> None:
        if masters < 1:
            raise ValueError("masters must be >= 1")
        self.n_workers = workers
        self.n_masters = masters
        self.slots = slots
        self.prefetch = prefetch
        self.profile_dir = profile_dir.resolve() if profile_dir else None
        self.name = name
        # Added to the workers' environment (their Python runners inherit it): e.g. a
        # PYTHONPATH naming the benchmarks' own modules of functions.
        self.worker_env = dict(worker_env or {})
        # The masters' --store: a SQL database they share (None: each its embedded Raft log).
        self.store_url = store_url
        self.master_extra = list(master_args)  # more flags for every master
        self.ports = [free_port() for _ in range(masters)]
        self.raft_ports = [free_port() for _ in range(masters)]
        self.node_ids = [f"{name}-m{i + 1}" for i in range(masters)]
        self.urls = [f"http://127.0.0.1:{p}" for p in self.ports]
        self.port = self.ports[0]
        self.url = self.urls[0]
        self.tmp = Path(tempfile.mkdtemp(prefix=f"agentflow-{name}-"))
        self.masters: list[_Child | None] = [None] * masters
        self.workers: list[_Child] = []

    @property
    def master(self) -> _Child | None:
        """The first master (the only one of a single-master cluster)."""
        return self.masters[0]

    @property
    def client_url(self) -> str:
        """What workers and clients are given: every master, comma-separated."""
        return ",".join(self.urls)

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

    def _master_args(self, i: int) -> list[str]:
        data_dir = self.tmp / ("data" if self.n_masters == 1 else f"data-m{i + 1}")
        args = [
            "--node-id",
            self.node_ids[i],
            "--host",
            "127.0.0.1",
            "--port",
            str(self.ports[i]),
            "--data-dir",
            str(data_dir),
            "--raft-port",
            str(self.raft_ports[i]),
            "--log-level",
            "warning",
        ]
        args += self.master_extra
        if self.store_url is not None:
            return [*args, "--store", self.store_url]  # the masters meet in the database
        if self.n_masters > 1:
            peers = ",".join(
                f"{self.node_ids[j]}=127.0.0.1:{self.raft_ports[j]}"
                for j in range(self.n_masters)
                if j != i
            )
            args += ["--peers", peers, "--cluster-token", f"{self.name}-bench-token"]
        return args

    def _master_name(self, i: int) -> str:
        return "master" if self.n_masters == 1 else f"master{i + 1}"

    def start(self) -> None:
        for i in range(self.n_masters):
            self.masters[i] = self._spawn(
                self._master_name(i), "agentflow-master", self._master_args(i)
            )
        for i in range(self.n_masters):
            self._wait_healthy(i)
        if self.n_masters > 1 or self.store_url is not None:  # (a SQL writer takes a lease)
            self.wait_leader()
            self.wait_writable()
        for i in range(self.n_workers):
            self.workers.append(
                self._spawn(
                    f"worker{i + 1}",
                    "agentflow-worker",
                    [
                        "--worker-id",
                        f"{self.name}-w{i + 1}",
                        "--master-url",
                        self.client_url,
                        "--slots",
                        str(self.slots),
                        "--prefetch",
                        str(self.prefetch),
                        "--log-level",
                        "warning",
                    ],
                    self.worker_env,
                )
            )
        if self.n_workers:
            self._wait_workers()

    def _spawn(
        self, name: str, command: str, args: list[str], extra_env: dict[str, str] | None = None
    ) -> _Child:
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
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_clean_env() | (extra_env or {}),
                cwd=self.tmp,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, safe before exec
            )
        return _Child(name, proc, log_path)

    def _wait_healthy(self, i: int = 0, timeout_s: float = START_TIMEOUT_S) -> None:
        master = self.masters[i]
        assert master is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if master.proc.poll() is not None:
                raise RuntimeError(f"{master.name} exited at start:\n{master.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.urls[i] + "/health", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{master.name} not healthy after {timeout_s}s:\n{master.log_tail()}")

    # -- a Raft group of masters --------------------------------------------------------------

    def alive_masters(self) -> list[int]:
        return [i for i, m in enumerate(self.masters) if m is not None and m.proc.poll() is None]

    def cluster_status(self, i: int, timeout_s: float = 1.0) -> dict[str, Any] | None:
        """``GET /api/v1/cluster`` of master ``i`` (its own view), or None if it does not
        answer."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            answer = httpx.get(self.urls[i] + "/api/v1/cluster", timeout=timeout_s)
            if answer.status_code == 200:
                status: dict[str, Any] = answer.json()
                return status
        return None

    def leader_index(self) -> int | None:
        """The index of the live master that every live master names as leader, else None."""
        seen = set()
        for i in self.alive_masters():
            status = self.cluster_status(i)
            if status is None or not status.get("leader_id"):
                return None
            seen.add(status["leader_id"])
        if len(seen) != 1:
            return None
        leader_id = seen.pop()
        if leader_id not in self.node_ids:
            return None
        leader = self.node_ids.index(leader_id)
        # Survivors of a killed leader name it until their election timeout: not a leader.
        return leader if leader in self.alive_masters() else None

    def wait_leader(self, timeout_s: float = START_TIMEOUT_S) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            leader = self.leader_index()
            if leader is not None:
                return leader
            time.sleep(0.02)
        views = []
        for i in self.alive_masters():
            status = self.cluster_status(i) or {}
            keys = ("leader_id", "role", "term", "commit_index", "applied_index", "last_index")
            views.append(f"{self.node_ids[i]}: " + " ".join(f"{k}={status.get(k)}" for k in keys))
        raise RuntimeError(
            f"no agreed leader within {timeout_s}s:\n" + "\n".join(views) + "\n" + self.logs()
        )

    def wait_writable(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until a task submit through the first live master answers 201 (committed)."""
        deadline = time.monotonic() + timeout_s
        url = self.urls[self.alive_masters()[0]] + "/api/v1/tasks"
        last = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                answer = httpx.post(
                    url, json={"command": "true", "group": "bench-probe"}, timeout=2.0
                )
                if answer.status_code == 201:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            time.sleep(0.02)
        raise RuntimeError(f"no write accepted within {timeout_s}s: {last}")

    def kill_master(self, i: int) -> None:
        """SIGKILL master ``i`` (no shutdown of any kind) and reap it; it no longer counts as
        one of the cluster's processes until :meth:`restart_master`."""
        master = self.masters[i]
        assert master is not None
        master.proc.kill()
        master.proc.wait()
        self.masters[i] = None

    def restart_master(self, i: int) -> None:
        """Start master ``i`` again with the same id, ports and data directory."""
        master = self.masters[i]
        if master is not None and master.proc.poll() is None:
            raise RuntimeError(f"{master.name} is still running")
        self.masters[i] = self._spawn(
            self._master_name(i), "agentflow-master", self._master_args(i)
        )
        self._wait_healthy(i)

    def wait_caught_up(self, i: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until master ``i`` has applied at least what the leader had committed when asked,
        and names the same leader."""
        deadline = time.monotonic() + timeout_s
        leader = self.wait_leader(timeout_s)
        target_status = self.cluster_status(leader)
        target = target_status["commit_index"] if target_status else 0
        while time.monotonic() < deadline:
            status = self.cluster_status(i)
            if (
                status is not None
                and status.get("applied_index", 0) >= target
                and status.get("leader_id") == self.node_ids[leader]
            ):
                return
            time.sleep(0.02)
        raise RuntimeError(f"master {i + 1} did not catch up within {timeout_s}s")

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
        masters = [m for m in self.masters if m is not None]
        children = [*self.workers, *masters]
        # uvicorn re-raises SIGTERM after its shutdown, which kills the process before cProfile
        # writes its file; SIGINT ends as KeyboardInterrupt, and cProfile still writes.
        sig = signal.SIGINT if self.profile_dir is not None else signal.SIGTERM
        for group in (self.workers, masters):
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
        return [*(m for m in self.masters if m is not None), *self.workers]

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

        return Client(self.client_url, timeout_s=timeout_s, retry_for_s=1.0)


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
