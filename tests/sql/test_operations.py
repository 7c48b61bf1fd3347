"""Running a master on a real store: a store it cannot use at start ends it with one line
(exit 2) naming the store, its password hidden, and the server's reason, within a bound (no
hang, no traceback); a command or a state image over MariaDB's max_allowed_packet is refused
(413) or logged, and the master goes on."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from agentflow.cluster.sql import LogStore, StoreUrl
from agentflow.cluster.sql.logconfig import SqlLogConfig
from agentflow.cluster.sql.sqllog import SqlLog
from agentflow.errors import PayloadTooLargeError
from agentflow.state import StateMachine
from agentflow.state.commands import RegisterWorker
from agentflow.testing.sqlserve import MariaDbServer, PostgresServer

MASTER = Path(sys.executable).parent / "agentflow-master"
START_DEADLINE_S = 90.0  # stops a hang; the bound itself is the store's timeouts (5 s)
SAYS = {  # what each server says, in part, for a wrong password and for no such database
    ("postgresql", "password"): "password authentication failed",
    ("mysql", "password"): "Access denied",
    ("postgresql", "database"): 'database "nosuchdb" does not exist',
    ("mysql", "database"): "Unknown database 'nosuchdb'",
}


def _start_master(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    argv = [str(MASTER), "--store", url, "--port", "0", "--data-dir", str(tmp_path / "data")]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=START_DEADLINE_S, env=env, check=False
    )


def _one_line_exit_2(done: subprocess.CompletedProcess[str], secret: str) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert secret not in done.stderr + done.stdout
    return lines[0]


@pytest.mark.parametrize("wrong", ["password", "database"])
def test_a_store_that_refuses_the_master_at_start_is_one_line_and_exit_2(
    server: PostgresServer | MariaDbServer, url: StoreUrl, tmp_path: Path, wrong: str
) -> None:
    assert url.password is not None
    secret = "not-the-Secret-42"
    bad = replace(url, password=secret) if wrong == "password" else url
    text = server.url("nosuchdb") if wrong == "database" else _text(bad)
    line = _one_line_exit_2(_start_master(text, tmp_path), secret)
    assert line.startswith("error: cannot start on the store ")
    assert f"{url.dialect}://agentflow:***@127.0.0.1:{server.port}/" in line
    assert SAYS[(url.dialect, wrong)] in line
    assert url.password not in line


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that takes connections and never says a word (a hung server, a black hole)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
@pytest.mark.parametrize("answer", ["refused", "silent"])
def test_no_server_at_start_is_one_line_and_exit_2_not_a_hang(
    dialect: str, answer: str, silent_port: int, tmp_path: Path
) -> None:
    if answer == "refused":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # bound, never listened: nothing there
    else:
        port = silent_port
    secret = "Hush-hush-123"
    done = _start_master(f"{dialect}://agentflow:{secret}@127.0.0.1:{port}/db", tmp_path)
    line = _one_line_exit_2(done, secret)
    assert f"cannot start on the store {dialect}://agentflow:***@127.0.0.1:{port}/db" in line


def _text(url: StoreUrl) -> str:
    return f"{url.dialect}://{url.user}:{url.password}@{url.host}:{url.port}/{url.database}"


# -- max_allowed_packet ----------------------------------------------------------------------

SMALL_PACKET = 64 * 1024  # what the server takes in one statement during these tests


@pytest.fixture
def small_packet(server: PostgresServer | MariaDbServer, url: StoreUrl) -> Iterator[None]:
    """MariaDB's max_allowed_packet lowered for new connections, restored after."""
    if url.dialect != "mysql":
        pytest.skip("PostgreSQL has no packet limit below bytea's 1 GiB")
    import pymysql

    def set_packet(size: int) -> None:
        conn = pymysql.connect(
            host=url.host, port=url.port, user=url.user, password=url.password or ""
        )
        try:
            with conn.cursor() as cur:
                cur.execute(f"SET GLOBAL max_allowed_packet = {size}")
        finally:
            conn.close()

    set_packet(SMALL_PACKET)
    try:
        yield
    finally:
        set_packet(64 << 20)


def _worker(n: int, hostname_chars: int = 8) -> RegisterWorker:
    return RegisterWorker(
        now_ms=1_700_000_000_000 + n,
        worker_id=f"w{n}",
        group="default",
        slots=1,
        resources={},
        labels={},
        hostname=os.urandom(hostname_chars // 2).hex(),
    )


async def _leading(url: StoreUrl, **settings: int) -> SqlLog:
    crashes: list[BaseException] = []
    log = SqlLog(
        SqlLogConfig(node_id="m1", api_url="http://m1", store_url=url.redacted(), **settings),
        StateMachine(),
        LogStore(url),
        on_crash=crashes.append,
    )
    await log.start()
    deadline = asyncio.get_running_loop().time() + 60.0
    while not log.is_leader:
        assert asyncio.get_running_loop().time() < deadline, "never led"
        await asyncio.sleep(0.02)
    log.crashes = crashes  # type: ignore[attr-defined]
    return log


async def test_a_command_over_max_allowed_packet_is_refused_and_the_master_goes_on(
    url: StoreUrl, small_packet: None
) -> None:
    log = await _leading(url)
    try:
        big = _worker(1, hostname_chars=SMALL_PACKET)  # escaped, twice the packet
        results = await asyncio.gather(
            log.propose(_worker(2)), log.propose(big), log.propose(_worker(3)),
            return_exceptions=True,
        )  # fmt: skip
        assert isinstance(results[1], PayloadTooLargeError) and results[1].status == 413
        assert "max_allowed_packet" in str(results[1])
        assert {r["worker_id"] for r in (results[0], results[2])} == {"w2", "w3"}  # type: ignore[index]
        assert (await log.propose(_worker(4)))["worker_id"] == "w4"
        assert log.is_leader and log.crashes == []  # type: ignore[attr-defined]
        assert sorted(log.machine.workers) == ["w2", "w3", "w4"]
    finally:
        await log.close()


async def test_a_snapshot_over_max_allowed_packet_is_logged_and_the_master_goes_on(
    url: StoreUrl, small_packet: None, caplog: pytest.LogCaptureFixture
) -> None:
    log = await _leading(url, snapshot_every=4)
    try:
        for n in range(10):  # each entry fits; the image of ten does not
            await log.propose(_worker(n, hostname_chars=SMALL_PACKET // 6))
        assert log.is_leader and log.crashes == []  # type: ignore[attr-defined]
        assert "taking a snapshot failed" in caplog.text
        assert "max_allowed_packet" in caplog.text
        reader = LogStore(url)
        try:
            snapshot = reader.snapshot()  # the image of 4 may fit (it is compressed); of 8 not
            assert snapshot is None or snapshot[0] < 8
            assert reader.last_index() == log.machine.applied_index == 10
        finally:
            reader.close()
    finally:
        await log.close()
