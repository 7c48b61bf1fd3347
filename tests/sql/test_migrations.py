"""The schema: created once, again a no-op, safe when two masters start together, and bound
to one cluster id; a database newer than the code is refused."""

import threading
from collections.abc import Callable

import pytest

from agentflow.cluster.sql import LogStore, StoreUrl
from agentflow.cluster.sql.dialect import dialect_for
from agentflow.cluster.sql.migrations import LATEST
from agentflow.errors import ConfigError


def _query(url: StoreUrl, sql: str) -> list[tuple[object, ...]]:
    conn = dialect_for(url).connect(url, 10.0)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def test_migrate_is_idempotent(make_store: Callable[..., LogStore], url: StoreUrl) -> None:
    store = make_store()
    uid = store.migrate("c1")
    assert len(uid) == 32
    assert store.migrate("c1") == uid
    assert make_store().migrate("c1") == uid
    versions = _query(url, "SELECT version FROM agentflow_schema ORDER BY version")
    assert versions == [(v,) for v in range(1, LATEST + 1)]
    lease = store.lease()
    assert (lease.holder, lease.epoch) == ("", 0)
    assert lease.remaining_s <= 0
    assert store.last_index() == 0
    assert store.snapshot() is None


def test_two_masters_migrate_at_once(make_store: Callable[..., LogStore], url: StoreUrl) -> None:
    stores = [make_store(timeout_s=30.0) for _ in range(2)]
    start = threading.Barrier(2)
    uids: list[str] = []
    errors: list[BaseException] = []

    def run(store: LogStore) -> None:
        start.wait()
        try:
            uids.append(store.migrate("c1"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(uids) == 2
    assert uids[0] == uids[1]
    assert _query(url, "SELECT COUNT(*) FROM agentflow_schema") == [(LATEST,)]
    assert _query(url, "SELECT COUNT(*) FROM agentflow_lease") == [(1,)]
    assert _query(url, "SELECT COUNT(*) FROM agentflow_meta") == [(2,)]


def test_another_cluster_id_is_refused(make_store: Callable[..., LogStore]) -> None:
    make_store().migrate("prod")
    with pytest.raises(ConfigError, match="belongs to cluster 'prod', not 'staging'"):
        make_store().migrate("staging")


def test_a_newer_schema_is_refused(make_store: Callable[..., LogStore], url: StoreUrl) -> None:
    store = make_store()
    store.migrate("c1")
    _query(url, f"INSERT INTO agentflow_schema VALUES ({LATEST + 1}, CURRENT_TIMESTAMP)")
    with pytest.raises(ConfigError, match=f"schema version {LATEST + 1} is newer"):
        make_store().migrate("c1")


def test_the_store_works_again_after_a_refused_migration(
    make_store: Callable[..., LogStore],
) -> None:
    store = make_store()
    store.migrate("prod")
    with pytest.raises(ConfigError):
        store.migrate("other")
    # the refusal released the migration lock and kept the connection usable
    assert make_store(timeout_s=10.0).migrate("prod") == store.migrate("prod")
