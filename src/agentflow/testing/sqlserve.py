"""Throwaway PostgreSQL and MariaDB servers for tests and benchmarks, on 127.0.0.1.

``PostgresServer(root)`` and ``MariaDbServer(root)`` make a data directory under ``root``,
start the server on a free port and let the user ``agentflow`` in with a password (scram for
PostgreSQL, mysql_native_password for MariaDB). As root they run as the distribution's
unprivileged account (``postgres`` / ``mysql``: PostgreSQL refuses to run as root); ``root``
and its parents must then be traversable by that account (a ``tempfile.mkdtemp`` under /tmp,
made 0711, is; pytest's own base temp, 0700, is not). Durability stays as shipped: fsync on,
and for MariaDB ``innodb_flush_log_at_trx_commit=1`` (binary log off, so ``sync_binlog``
does not apply); ``max_allowed_packet`` is raised to 64 MiB. Each server runs in a process
group of its own, killed whole by ``kill9()``/``stop()`` and at interpreter exit.

``unavailable(dialect)`` says why a server cannot be made here (binaries missing), or None.
Test machinery only: never imported by anything a master or worker runs.
"""

from __future__ import annotations

import abc
import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from agentflow.testing.ports import free_port

__all__ = ["MariaDbServer", "PostgresServer", "unavailable"]

START_WAIT_S = 60.0
STOP_WAIT_S = 30.0
POLL_S = 0.05
USER = "agentflow"
PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
               "/usr/lib/postgresql/15/bin")  # fmt: skip
MAX_ALLOWED_PACKET = "64M"

_running: set[_Server] = set()


def _pg_bin() -> Path | None:
    for d in PG_BIN_DIRS:
        if (Path(d) / "postgres").exists() and (Path(d) / "initdb").exists():
            return Path(d)
    found = shutil.which("initdb")
    return Path(found).parent if found and (Path(found).parent / "postgres").exists() else None


def unavailable(dialect: str) -> str | None:
    """Why a ``dialect`` ("postgresql" or "mysql") server cannot run here, or None."""
    if dialect == "postgresql":
        if _pg_bin() is None:
            return "PostgreSQL is not installed (initdb, postgres): make sysdeps"
        return _driver("psycopg", "postgresql")
    if dialect == "mysql":
        if not (shutil.which("mariadbd") or Path("/usr/sbin/mariadbd").exists()):
            return "MariaDB is not installed (mariadbd): make sysdeps"
        if not shutil.which("mariadb-install-db"):
            return "MariaDB is not installed (mariadb-install-db): make sysdeps"
        return _driver("pymysql", "mysql")
    raise ValueError(f"unknown dialect {dialect!r}")


def _driver(module: str, extra: str) -> str | None:
    try:
        __import__(module)
    except ImportError:
        return f"the {module} driver is missing: pip install agentflow[{extra}]"
    return None


def _account(name: str) -> str | None:
    """The account to run a server as: ``name`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(f"running as root and there is no {name!r} account to run as") from None
    return name


class _Server(abc.ABC):
    """The process and lifecycle a server of either kind has; subclasses say how to make,
    start, probe and address it."""

    dialect = ""
    account = ""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.user = _account(self.account)
        self.data: Path = self.root / self.dialect
        self._proc: subprocess.Popen[bytes] | None = None
        self._made = False

    # -- what a test uses -------------------------------------------------------------------
    def url(self, database: str) -> str:
        return f"{self.dialect}://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A new empty database ``name`` (letters, digits, ``_``); its URL."""
        if not name.replace("_", "").isalnum() or not name.isascii():
            raise ValueError(f"database name {name!r}: letters, digits and _ only")
        self._admin(f"CREATE DATABASE {name}")
        self._after_create()
        return self.url(name)

    def _after_create(self) -> None:  # noqa: B027 (an optional hook, not abstract)
        """Nothing by default; see PostgresServer."""

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if not self._made:
            self.root.mkdir(parents=True, exist_ok=True)
            self._make()
            self._made = True
        log = open(self.root / f"{self.dialect}.log", "ab")  # noqa: SIM115 - the child's
        with log:
            self._proc = subprocess.Popen(
                self._argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                user=self.user,
            )
        _running.add(self)
        self._wait_ready()

    def stop(self) -> None:
        """A clean shutdown (then SIGKILL after STOP_WAIT_S); no-op when not running."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, self._stop_signal())
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(STOP_WAIT_S)
        self.kill9()

    def kill9(self) -> None:
        """SIGKILL to the whole process group (server and its children); waits until gone."""
        proc, self._proc = self._proc, None
        _running.discard(self)
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(STOP_WAIT_S)
        deadline = time.monotonic() + STOP_WAIT_S
        while time.monotonic() < deadline:  # children outlive the leader's wait briefly
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(POLL_S)
        raise RuntimeError(f"{self.dialect} process group {proc.pid} outlived SIGKILL")

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> _Server:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the parts each kind fills in -------------------------------------------------------
    @abc.abstractmethod
    def _make(self) -> None: ...

    @abc.abstractmethod
    def _argv(self) -> list[str]: ...

    def _stop_signal(self) -> int:
        return signal.SIGTERM

    @abc.abstractmethod
    def _connect(self, timeout_s: float) -> Any: ...

    def _admin(self, sql: str) -> None:
        conn = self._connect(10.0)
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    # -- shared machinery -------------------------------------------------------------------
    def _wait_ready(self) -> None:
        """Until the server takes a password login over TCP (the observable ready state)."""
        deadline = time.monotonic() + START_WAIT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise RuntimeError(f"{self.dialect} exited at start:\n{self._log_tail()}")
            try:
                self._connect(2.0).close()
                return
            except Exception as exc:  # the driver's "not yet": refused, starting up
                last = exc
            time.sleep(POLL_S)
        self.kill9()
        raise RuntimeError(f"{self.dialect} not ready in {START_WAIT_S}s ({last}):\n"
                           f"{self._log_tail()}")  # fmt: skip

    def _log_tail(self) -> str:
        path = self.root / f"{self.dialect}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else "(no log)"

    def _own(self, *paths: Path) -> None:
        """Hand ``paths`` to the account the server runs as."""
        if self.user is None:
            return
        entry = pwd.getpwnam(self.user)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(argv, capture_output=True, user=self.user, check=False)
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode(errors="replace")[-3000:]
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}):\n{out}")

    def _check_reachable(self) -> None:
        """As another account, every directory above the data dir must be traversable."""
        if self.user is None:
            return
        for parent in [self.root, *self.root.parents]:
            if not os.stat(parent).st_mode & 0o001:
                raise RuntimeError(
                    f"{parent} is not traversable by {self.user}: "
                    f"put the servers' root under a directory with o+x (chmod 0711)"
                )


class PostgresServer(_Server):
    """PostgreSQL (initdb + postgres) on 127.0.0.1:<port>, user ``agentflow`` (superuser)."""

    dialect = "postgresql"
    account = "postgres"

    def _make(self) -> None:
        self._check_reachable()
        bin_dir = _pg_bin()
        if bin_dir is None:
            raise RuntimeError(unavailable("postgresql") or "no PostgreSQL")
        self.data.mkdir(parents=True)
        pwfile = self.root / "pg-password"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._own(self.data, pwfile)
        self._run([
            str(bin_dir / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=peer", "--encoding=UTF8",
            "--locale=C", "--no-sync", "--no-instructions",
        ])  # fmt: skip
        pwfile.unlink()

    def _argv(self) -> list[str]:
        bin_dir = _pg_bin()
        assert bin_dir is not None
        return [
            str(bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
            "-c", "max_connections=100", "-c", "fsync=on", "-c", "synchronous_commit=on",
        ]  # fmt: skip

    def _stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown: SIGTERM would wait for clients to leave

    def _after_create(self) -> None:
        # CREATE DATABASE writes the whole template (~8 MB) into the WAL; without a checkpoint
        # after it, a kill -9 replays every test's database at the next start (seconds each).
        # What a test writes afterwards is still only in the WAL: durability is still tested.
        self._admin("CHECKPOINT")

    def _connect(self, timeout_s: float) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password,
            dbname="postgres", connect_timeout=max(2, int(timeout_s)), autocommit=True,
        )  # fmt: skip


class MariaDbServer(_Server):
    """MariaDB (mariadb-install-db + mariadbd) on 127.0.0.1:<port>, user ``agentflow`` with
    every privilege, created by an init file at each start (idempotent)."""

    dialect = "mysql"
    account = "mysql"

    @property
    def run_dir(self) -> Path:
        """Socket, pid file, error log and init file: the server's account writes there."""
        return self.root / "mysql-run"

    def _make(self) -> None:
        self._check_reachable()
        self.data.mkdir(parents=True)
        self.run_dir.mkdir()
        self._own(self.data, self.run_dir)
        init = self.run_dir / "init.sql"
        init.write_text(
            f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{self.password}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' WITH GRANT OPTION;\n"
        )
        init.chmod(0o600)
        self._own(init)
        argv = ["mariadb-install-db", "--no-defaults", f"--datadir={self.data}",
                "--auth-root-authentication-method=socket", "--skip-test-db",
                "--skip-name-resolve"]  # fmt: skip
        if self.user is not None:
            argv.append(f"--user={self.user}")
        self._run(argv)

    def _argv(self) -> list[str]:
        daemon = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        argv = [
            daemon, "--no-defaults", f"--datadir={self.data}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.run_dir / 'mariadb.sock'}",
            f"--pid-file={self.run_dir / 'mariadb.pid'}",
            f"--init-file={self.run_dir / 'init.sql'}",
            "--skip-name-resolve", "--innodb-flush-log-at-trx-commit=1",
            "--innodb-doublewrite=1", f"--max-allowed-packet={MAX_ALLOWED_PACKET}",
            "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=48M",
            "--character-set-server=utf8mb4", "--collation-server=utf8mb4_bin",
            f"--log-error={self.run_dir / 'mariadb.err'}",
        ]  # fmt: skip
        if self.user is not None:
            argv.append(f"--user={self.user}")
        return argv

    def _connect(self, timeout_s: float) -> Any:
        import pymysql

        return pymysql.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password,
            connect_timeout=timeout_s, autocommit=True,
        )  # fmt: skip

    def _log_tail(self) -> str:
        err = self.run_dir / "mariadb.err"
        tail = err.read_text(errors="replace")[-3000:] if err.exists() else ""
        return super()._log_tail() + tail


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.kill9()
