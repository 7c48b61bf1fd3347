"""Real PostgreSQL and MariaDB servers, each started once per session on a free port under a
root of its own; each test gets a fresh database. A dialect whose server cannot run here is
skipped with the reason (``make sysdeps`` installs both)."""

import itertools
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentflow.cluster.sql import LogStore, StoreUrl, parse_store
from agentflow.testing.sqlserve import MariaDbServer, PostgresServer, unavailable

DIALECTS = ["postgresql", "mysql"]
WAIT_S = 60.0  # a generous deadline on observable conditions; never a timed assertion
_names = itertools.count(1)


@pytest.fixture(scope="session")
def sql_root() -> Iterator[Path]:
    # Not pytest's base temp: that is 0700, and the servers run as postgres / mysql.
    root = Path(tempfile.mkdtemp(prefix="agentflow-sql-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _serve(cls: type[PostgresServer | MariaDbServer], root: Path) -> Iterator[Any]:
    why = unavailable(cls.dialect)
    if why is not None:
        pytest.skip(why)
    server = cls(root)
    try:
        server.start()
        yield server
    finally:
        server.kill9()  # the data is thrown away: a clean shutdown would only flush it


@pytest.fixture(scope="session")
def postgres_server(sql_root: Path) -> Iterator[PostgresServer]:
    yield from _serve(PostgresServer, sql_root)


@pytest.fixture(scope="session")
def mariadb_server(sql_root: Path) -> Iterator[MariaDbServer]:
    yield from _serve(MariaDbServer, sql_root)


@pytest.fixture(params=DIALECTS)
def server(request: pytest.FixtureRequest) -> PostgresServer | MariaDbServer:
    name = "postgres_server" if request.param == "postgresql" else "mariadb_server"
    server: PostgresServer | MariaDbServer = request.getfixturevalue(name)
    server.start()  # a no-op unless an earlier test left it stopped
    return server


@pytest.fixture
def url(server: PostgresServer | MariaDbServer) -> StoreUrl:
    parsed = parse_store(server.create_database(f"t{next(_names)}"))
    assert parsed is not None
    return parsed


@pytest.fixture
def make_store(url: StoreUrl) -> Iterator[Callable[..., LogStore]]:
    """New LogStores on the test's database (one connection each), closed at the end."""
    made: list[LogStore] = []

    def make(cls: type[LogStore] = LogStore, **kwargs: Any) -> LogStore:
        store = cls(url, **kwargs)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s}s: {what}")
        time.sleep(0.02)
