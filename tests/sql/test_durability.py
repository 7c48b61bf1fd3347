"""What the database promises us: an acknowledged append survives kill -9 of the server, and
while the server is down every call fails fast with StoreUnavailable, then works again on the
next call after it is back (the connection is reopened, nobody restarts the store)."""

from collections.abc import Callable

import pytest

from agentflow.cluster.sql import LogStore, StoreUrl
from agentflow.errors import StoreUnavailable, UnavailableError
from agentflow.testing.sqlserve import MariaDbServer, PostgresServer

LONG_TTL_S = 600.0


def test_an_acknowledged_append_survives_kill_9(
    server: PostgresServer | MariaDbServer, make_store: Callable[..., LogStore]
) -> None:
    store = make_store()
    store.migrate("c1")
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    entries = [bytes([i]) * 1000 for i in range(50)]
    for i, data in enumerate(entries, start=1):
        store.append(lease, i, [data])
    store.save_snapshot(lease, 50, b"image")

    server.kill9()
    server.start()

    fresh = make_store()
    assert fresh.read(0, 100) == list(enumerate(entries, start=1))
    assert fresh.snapshot() == (50, b"image")
    assert fresh.lease().holder == "a"
    assert fresh.lease().epoch == lease.epoch


def test_unavailable_while_down_and_back_on_the_next_call(
    server: PostgresServer | MariaDbServer, make_store: Callable[..., LogStore], url: StoreUrl
) -> None:
    store = make_store()
    store.migrate("c1")
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    store.append(lease, 1, [b"before"])

    server.stop()
    for _ in range(2):  # the dropped connection, then a refused reconnect
        with pytest.raises(StoreUnavailable) as caught:
            store.append(lease, 2, [b"while down"])
        assert isinstance(caught.value, UnavailableError)
        assert url.password is not None
        assert url.password not in str(caught.value)
        assert url.redacted() in str(caught.value)
    with pytest.raises(StoreUnavailable):
        store.last_index()

    server.start()
    assert store.last_index() == 1
    store.append(lease, 2, [b"after"])
    assert store.read(0, 10) == [(1, b"before"), (2, b"after")]


def test_a_server_killed_mid_session_is_unavailable_then_recovers(
    server: PostgresServer | MariaDbServer, make_store: Callable[..., LogStore]
) -> None:
    store = make_store()
    store.migrate("c1")
    lease = store.acquire("a", "http://a", LONG_TTL_S)
    assert lease is not None
    server.kill9()
    with pytest.raises(StoreUnavailable):
        store.renew(lease, LONG_TTL_S)
    server.start()
    renewed = store.renew(lease, LONG_TTL_S)
    assert renewed.epoch == lease.epoch


def test_a_wrong_password_is_unavailable_and_not_shown(
    url: StoreUrl, make_store: Callable[..., LogStore]
) -> None:
    from dataclasses import replace

    wrong = replace(url, password="not-the-Secret-42")
    store = make_store()
    store.migrate("c1")
    with pytest.raises(StoreUnavailable) as caught:
        LogStore(wrong).last_index()
    text = str(caught.value) + repr(caught.value.__cause__) + str(caught.value.__cause__)
    assert "not-the-Secret-42" not in text
    assert url.password is not None
    assert url.password not in text


def test_a_database_that_acknowledges_early_is_overridden_for_our_session(
    url: StoreUrl, make_store: Callable[..., LogStore]
) -> None:
    if url.dialect != "postgresql":
        pytest.skip("MariaDB's innodb_flush_log_at_trx_commit is global: the server's to set")
    admin = make_store()
    admin.migrate("c1")
    conn = admin._connection()  # a look inside: which setting did our session end up with?
    cur = conn.cursor()
    cur.execute(f'ALTER DATABASE "{url.database}" SET synchronous_commit = off')
    conn.commit()
    store = make_store()
    assert store.last_index() == 0
    cur = store._connection().cursor()
    cur.execute("SHOW synchronous_commit")
    assert cur.fetchone()[0] == "on"


def test_the_test_servers_are_durable_and_a_weaker_setting_is_named(
    url: StoreUrl, make_store: Callable[..., LogStore]
) -> None:
    store = make_store()
    assert store.durability_warning() is None
    if url.dialect != "mysql":
        return  # fsync can only change in postgresql.conf with a reload
    cur = store._connection().cursor()  # the test user may set globals; put it back after
    cur.execute("SET GLOBAL innodb_flush_log_at_trx_commit = 2")
    try:
        assert "innodb_flush_log_at_trx_commit is 2" in (make_store().durability_warning() or "")
    finally:
        cur.execute("SET GLOBAL innodb_flush_log_at_trx_commit = 1")
    assert make_store().durability_warning() is None
