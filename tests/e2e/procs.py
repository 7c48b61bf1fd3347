"""Real master and worker processes on 127.0.0.1 for end-to-end tests.

Each process gets a free port and its own directory; everything started is killed (process
group and all) when the test ends.

With ``AGENTFLOW_E2E_STORE=postgresql|mysql`` every master runs on a SQL store instead of the
embedded Raft log: one server of that kind per test session (started on first use), and a
fresh database per master data directory, except that the masters of a :meth:`Processes.cluster`
share one database (N masters on one store, no ``--peers``). A master restarted on the same
data directory finds the same database, as it would find its Raft log.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from agentflow.testing.ports import free_port
from agentflow.testing.sqlserve import MariaDbServer, PostgresServer, unavailable
from tests.e2e.faultproxy import FaultProxy

BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 20.0
STORE_ENV = "AGENTFLOW_E2E_STORE"
STORE_DIALECTS = ("postgresql", "mysql")


def e2e_store() -> str | None:
    """The SQL dialect the e2e suite runs its masters on (``AGENTFLOW_E2E_STORE``), or None."""
    dialect = os.environ.get(STORE_ENV, "").strip() or None
    if dialect is not None and dialect not in STORE_DIALECTS:
        raise ValueError(f"{STORE_ENV}={dialect!r}: one of {', '.join(STORE_DIALECTS)}")
    return dialect


SqlServer = PostgresServer | MariaDbServer
_servers: dict[str, SqlServer] = {}
_databases = itertools.count(1)


def sql_server(dialect: str) -> SqlServer:
    """This process's one ``dialect`` server, started on first use (stopped at exit)."""
    server = _servers.get(dialect)
    if server is None:
        why = unavailable(dialect)
        if why is not None:
            raise RuntimeError(f"{STORE_ENV}={dialect}: {why}")
        # Not pytest's base temp (0700): the server runs as postgres / mysql when we are root.
        root = Path(tempfile.mkdtemp(prefix=f"agentflow-e2e-{dialect}-"))
        root.chmod(0o711)
        server = PostgresServer(root) if dialect == "postgresql" else MariaDbServer(root)
        _servers[dialect] = server
    server.start()  # a no-op when running; brings it back after a test stopped it
    return server


def stop_sql_servers() -> None:
    for server in _servers.values():
        with contextlib.suppress(Exception):
            server.kill9()  # the data is thrown away: a clean shutdown would only flush it
        shutil.rmtree(server.root, ignore_errors=True)
    _servers.clear()


def fresh_database(dialect: str) -> str:
    """The URL of a new empty database on this process's ``dialect`` server."""
    return sql_server(dialect).create_database(f"e2e_{os.getpid()}_{next(_databases)}")


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
        self._closers: list[Callable[[], None]] = []
        self.store = e2e_store()
        self._store_urls: dict[str, str] = {}

    def use_store(self, url: str) -> None:
        """Run the masters of :meth:`cluster` on the database ``url`` (tests of the SQL store)."""
        self.store = url.split(":", 1)[0]
        self._store_urls["cluster"] = url

    def store_url(self, key: str) -> str:
        """The database of ``key`` (a data directory, or "cluster"), made on first use."""
        assert self.store is not None
        if key not in self._store_urls:
            self._store_urls[key] = fresh_database(self.store)
        return self._store_urls[key]

    def master(
        self,
        name: str = "m1",
        port: int | None = None,
        *extra: str,
        data_dir: Path | None = None,
        raft_port: int | None = None,
        env: dict[str, str] | None = None,
        store_key: str | None = None,
    ) -> tuple[Proc, str]:
        """Start a master; under a SQL store it runs on the database of ``store_key`` (by
        default its data directory's) and gets no ``--raft-port``."""
        port = port or free_port()
        data = data_dir or self.root / f"{name}-data"
        if self.store is None:
            log = ["--raft-port", str(raft_port or free_port())]
        else:
            log = ["--store", self.store_url(store_key or str(data.resolve()))]
        argv = [
            str(BIN / "agentflow-master"),
            "--node-id",
            name,
            "--port",
            str(port),
            "--data-dir",
            str(data),
            *log,
            "--log-level",
            "warning",
            *extra,
        ]
        proc = Proc(argv, self.root / f"{name}.log", env=env)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url, proc), STARTUP_TIMEOUT_S, f"master {name} at {url}")
        if self.store is not None:
            # A Raft cluster of one elects itself as it starts; a master on a SQL store takes
            # the lease on its loop's first tick, a few round trips after /health answers.
            wait_until(lambda: _leader_known(url), STARTUP_TIMEOUT_S, f"a leader known to {name}")
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

    def cluster(
        self,
        size: int = 3,
        *extra: str,
        proxied: bool = False,
        token: str = "e2e-cluster-token",
    ) -> Cluster:
        """``size`` masters named m1..mN that bootstrap one cluster from their ``--peers``
        (under a SQL store: that share one database).

        With ``proxied``, every directed peer link goes through a :class:`FaultProxy` relay
        (``cluster.proxy.links["m1->m2"]``) so a test can cut it.
        """
        cluster = Cluster(self, proxy=FaultProxy() if proxied else None, token=token)
        self._closers.append(cluster.close)
        names = [f"m{i}" for i in range(1, size + 1)]
        for name in names:
            cluster.masters[name] = ClusterMaster(
                name=name,
                port=free_port(),
                raft_port=free_port(),
                data_dir=self.root / f"{name}-data",
                extra=extra,
            )
        for name in names:
            others = [cluster.masters[n] for n in names if n != name]
            cluster.masters[name].peers = ",".join(
                f"{o.name}=127.0.0.1:{cluster.peer_port(name, o)}" for o in others
            )
        for name in names:
            cluster.start(name)
        return cluster

    def close(self) -> None:
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):
                closer()
        for proc in reversed(self.procs):
            proc.stop()


def _healthy(url: str, proc: Proc) -> bool:
    if not proc.alive():
        raise AssertionError(f"process exited with {proc.popen.returncode}:\n{proc.log()}")
    try:
        return httpx.get(url + "/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _leader_known(url: str) -> bool:
    """``/health/ready`` (public, like /health): this master knows a leader and caught up."""
    try:
        return httpx.get(url + "/health/ready", timeout=5.0).status_code == 200
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


# -- clusters of masters ----------------------------------------------------------------------

CLUSTER_PATH = "/api/v1/cluster"


@dataclass
class ClusterMaster:
    """One master of a :class:`Cluster`: its fixed ports, data directory and flags."""

    name: str
    port: int
    raft_port: int
    data_dir: Path
    extra: tuple[str, ...] = ()
    peers: str = ""
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def raft_address(self) -> str:
        return f"127.0.0.1:{self.raft_port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()


@dataclass
class Cluster:
    """N masters on 127.0.0.1 that keep their ports and data directories across restarts."""

    procs: Processes
    proxy: FaultProxy | None = None
    token: str = ""
    masters: dict[str, ClusterMaster] = field(default_factory=dict)

    @property
    def urls(self) -> str:
        """Every master's URL, comma-separated, as the SDK and workers take them."""
        return ",".join(m.url for m in self.masters.values())

    def url(self, name: str) -> str:
        return self.masters[name].url

    def peer_port(self, name: str, to: ClusterMaster) -> int:
        """The port ``name`` dials to reach ``to``: a relay of its own when proxied."""
        if self.proxy is None:
            return to.raft_port
        return self.proxy.link(f"{name}->{to.name}", to.raft_port).port

    def add(self, name: str, *extra: str, peers: Iterable[str] | None = None) -> ClusterMaster:
        """Describe one more master (not started); its ``--peers`` lists ``peers`` directly."""
        others = [self.masters[n] for n in (peers if peers is not None else self.masters)]
        master = ClusterMaster(
            name=name,
            port=free_port(),
            raft_port=free_port(),
            data_dir=self.procs.root / f"{name}-data",
            extra=extra,
            peers=",".join(f"{o.name}=127.0.0.1:{o.raft_port}" for o in others),
        )
        self.masters[name] = master
        return master

    def start(self, name: str, *more: str, token: str | None = None) -> ClusterMaster:
        """Start (or restart, same ports and data) ``name``; returns once /health answers."""
        master = self.masters[name]
        assert not master.alive(), f"{name} is already running"
        sql = self.procs.store is not None
        master.proc, _ = self.procs.master(
            name,
            master.port,
            *(() if sql else ("--peers", master.peers)),
            "--cluster-token",
            token if token is not None else self.token,
            "--heartbeat-interval",
            "0.5s",
            "--log-level",
            "info",  # leader changes and snapshots, for the post-mortem of a failed test
            *master.extra,
            *more,
            data_dir=master.data_dir,
            raft_port=master.raft_port,
            store_key="cluster",
        )
        return master

    def kill9(self, name: str) -> None:
        master = self.masters[name]
        assert master.proc is not None
        master.proc.kill9()

    def terminate(self, name: str) -> int:
        master = self.masters[name]
        assert master.proc is not None
        return master.proc.terminate()

    def status(self, name: str, **params: Any) -> dict[str, Any] | None:
        """``GET /api/v1/cluster`` on ``name``, or None when it does not answer."""
        if not self.masters[name].alive():
            return None
        try:
            response = httpx.get(self.url(name) + CLUSTER_PATH, params=params, timeout=2.0)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        body: dict[str, Any] = response.json()
        return body

    def leader(self, among: Iterable[str] | None = None, timeout_s: float = 30.0) -> str:
        """The leader that every running master of ``among`` agrees on (waits for one)."""
        names = list(among if among is not None else self.masters)
        found: list[str] = []

        def agreed() -> bool:
            views = [self.status(n) for n in names if self.masters[n].alive()]
            if not views or any(v is None for v in views):
                return False
            leaders = {v["leader_id"] for v in views if v is not None}
            if len(leaders) != 1 or None in leaders:
                return False
            (leader,) = leaders
            view = self.status(leader) if leader in names else None
            if view is None or view["role"] != "leader":
                return False
            found[:] = [leader]
            return True

        wait_until(agreed, timeout_s, f"one leader agreed by {names}")
        return found[0]

    def wait_converged(self, names: Iterable[str] | None = None, timeout_s: float = 30.0) -> str:
        """Wait until ``names`` applied the same index with the same state digest; the digest.

        Equal applied indexes with different digests is a divergence: that fails at once.
        """
        names = list(names if names is not None else self.masters)
        result: list[str] = []

        def same() -> bool:
            views = [self.status(n, digest="true") for n in names]
            if any(v is None for v in views):
                return False
            indexes = {v["state_applied_index"] for v in views if v is not None}
            if len(indexes) != 1:
                return False
            digests = {v["node_id"]: v["state_digest"] for v in views if v is not None}
            assert len(set(digests.values())) == 1, f"state diverged at {indexes}: {digests}"
            result[:] = list(digests.values())[:1]
            return True

        wait_until(same, timeout_s, f"{names} converged")
        return result[0]

    def close(self) -> None:
        if self.proxy is not None:
            self.proxy.close()
