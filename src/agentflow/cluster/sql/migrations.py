"""The store's schema, as numbered migrations applied in order under a database-wide lock.

Each migration is ``(version, {dialect: [statements]})``. :func:`migrate` takes the lock
(PostgreSQL ``pg_advisory_lock``, MariaDB ``GET_LOCK``), reads the highest applied version,
refuses a database newer than this code, applies the missing migrations each in its own
transaction and records each one's version after it. MariaDB commits DDL implicitly, so every
statement is idempotent (``IF NOT EXISTS``, ``INSERT IGNORE``): a master killed half-way leaves
a database the next one finishes.

Then the database is bound to one cluster: the first master writes its ``cluster_id`` and a
random ``cluster_uid`` into ``agentflow_meta``; a master with another cluster id is refused.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from agentflow.cluster.sql.dialect import Connection, Dialect
from agentflow.cluster.sql.historysql import history_ddl
from agentflow.errors import ConfigError, StoreUnavailable

__all__ = ["LATEST", "MAX_CLUSTER_ID_CHARS", "MIGRATIONS", "migrate"]

MAX_CLUSTER_ID_CHARS = 1024  # agentflow_meta.v

_MY_TABLE = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

MIGRATIONS: list[tuple[int, dict[str, list[str]]]] = [
    (
        1,
        {
            "postgresql": [
                "CREATE TABLE IF NOT EXISTS agentflow_meta"
                " (k VARCHAR(64) PRIMARY KEY, v VARCHAR(1024) NOT NULL)",
                "CREATE TABLE IF NOT EXISTS agentflow_lease (id INT PRIMARY KEY CHECK (id = 1),"
                " holder VARCHAR(128) NOT NULL, api_url VARCHAR(2048) NOT NULL,"
                " epoch BIGINT NOT NULL, expires_at TIMESTAMPTZ(6) NOT NULL)",
                "INSERT INTO agentflow_lease (id, holder, api_url, epoch, expires_at)"
                " VALUES (1, '', '', 0, '1970-01-01 00:00:00+00') ON CONFLICT (id) DO NOTHING",
                "CREATE TABLE IF NOT EXISTS agentflow_log"
                " (idx BIGINT PRIMARY KEY, epoch BIGINT NOT NULL, data BYTEA NOT NULL)",
                "CREATE TABLE IF NOT EXISTS agentflow_snapshot"
                " (id INT PRIMARY KEY CHECK (id = 1), idx BIGINT NOT NULL,"
                " epoch BIGINT NOT NULL, data BYTEA NOT NULL, taken_at TIMESTAMPTZ(6) NOT NULL)",
                "CREATE TABLE IF NOT EXISTS agentflow_members (node_id VARCHAR(128) PRIMARY KEY,"
                " api_url VARCHAR(2048) NOT NULL, seen_at TIMESTAMPTZ(6) NOT NULL,"
                " applied_idx BIGINT NOT NULL, reads_format INT NOT NULL,"
                " version VARCHAR(64) NOT NULL)",
            ],
            "mysql": [
                "CREATE TABLE IF NOT EXISTS agentflow_meta"
                " (k VARCHAR(64) PRIMARY KEY, v VARCHAR(1024) NOT NULL)" + _MY_TABLE,
                "CREATE TABLE IF NOT EXISTS agentflow_lease (id INT PRIMARY KEY CHECK (id = 1),"
                " holder VARCHAR(128) NOT NULL, api_url VARCHAR(2048) NOT NULL,"
                " epoch BIGINT NOT NULL, expires_at DATETIME(6) NOT NULL)" + _MY_TABLE,
                "INSERT IGNORE INTO agentflow_lease (id, holder, api_url, epoch, expires_at)"
                " VALUES (1, '', '', 0, '1970-01-01 00:00:00')",
                "CREATE TABLE IF NOT EXISTS agentflow_log"
                " (idx BIGINT PRIMARY KEY, epoch BIGINT NOT NULL, data LONGBLOB NOT NULL)"
                + _MY_TABLE,
                "CREATE TABLE IF NOT EXISTS agentflow_snapshot"
                " (id INT PRIMARY KEY CHECK (id = 1), idx BIGINT NOT NULL,"
                " epoch BIGINT NOT NULL, data LONGBLOB NOT NULL, taken_at DATETIME(6) NOT NULL)"
                + _MY_TABLE,
                "CREATE TABLE IF NOT EXISTS agentflow_members (node_id VARCHAR(128) PRIMARY KEY,"
                " api_url VARCHAR(2048) NOT NULL, seen_at DATETIME(6) NOT NULL,"
                " applied_idx BIGINT NOT NULL, reads_format INT NOT NULL,"
                " version VARCHAR(64) NOT NULL)" + _MY_TABLE,
            ],
        },
    ),
    # The history in SQL (design 20 §5): finished tasks, attempts, workflows, lock and message
    # events, with their indexes (see historysql.py).
    (2, {"postgresql": history_ddl("postgresql"), "mysql": history_ddl("mysql")}),
]
LATEST = MIGRATIONS[-1][0]


def migrate(conn: Connection, dialect: Dialect, cluster_id: str, *, latest: int = LATEST) -> str:
    """Bring the schema to ``latest`` and bind the database to ``cluster_id``; its uid.

    ConfigError when the database belongs to another cluster or has a newer schema;
    StoreUnavailable when another master holds the migration lock for too long. Driver
    errors propagate (the store maps them). ``latest`` is for tests that play an old master."""
    if not cluster_id or len(cluster_id) > MAX_CLUSTER_ID_CHARS:
        raise ConfigError(f"a cluster id has 1 to {MAX_CLUSTER_ID_CHARS} characters")
    sql = dialect.sql
    cur = conn.cursor()
    try:
        cur.execute(sql.migrate_lock)
        held = cur.fetchone()
        conn.commit()
        if dialect.name == "mysql" and (held is None or held[0] != 1):
            raise StoreUnavailable("another master held the migration lock past the lock wait")
        try:
            _apply(conn, cur, dialect, latest)
            uid = _bind(conn, cur, dialect, cluster_id)
        except BaseException:
            with contextlib.suppress(Exception):
                conn.rollback()
                _unlock(conn, cur, dialect)
            raise
        _unlock(conn, cur, dialect)
        return uid
    finally:
        cur.close()


def _apply(conn: Connection, cur: Any, dialect: Dialect, latest: int) -> None:
    cur.execute(dialect.sql.create_schema_table)
    conn.commit()
    cur.execute(dialect.sql.schema_version)
    row = cur.fetchone()
    conn.commit()
    have = 0 if row is None or row[0] is None else int(row[0])
    if have > latest:
        raise ConfigError(
            f"schema version {have} is newer than this master ({latest}); upgrade the master"
        )
    for version, statements in MIGRATIONS:
        if have < version <= latest:
            for statement in statements[dialect.name]:
                cur.execute(statement)
            cur.execute(dialect.sql.insert_schema, (version,))
            conn.commit()


def _bind(conn: Connection, cur: Any, dialect: Dialect, cluster_id: str) -> str:
    sql = dialect.sql
    cur.execute(sql.read_meta, ("cluster_id",))
    row = cur.fetchone()
    if row is None:
        cur.execute(sql.insert_meta, ("cluster_id", cluster_id))
        cur.execute(sql.insert_meta, ("cluster_uid", secrets.token_hex(16)))
    elif row[0] != cluster_id:
        raise ConfigError(
            f"the database belongs to cluster {row[0]!r}, not {cluster_id!r}:"
            " point --store at another database or use that --cluster-id"
        )
    cur.execute(sql.read_meta, ("cluster_uid",))
    uid = cur.fetchone()
    conn.commit()
    if uid is None:
        raise ConfigError("the database has a cluster_id but no cluster_uid: it was edited")
    return str(uid[0])


def _unlock(conn: Connection, cur: Any, dialect: Dialect) -> None:
    cur.execute(dialect.sql.migrate_unlock)
    cur.fetchone()
    conn.commit()
