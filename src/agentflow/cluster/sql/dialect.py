"""What differs between PostgreSQL and MySQL/MariaDB: the SQL text of each operation, how to
connect, and which driver errors mean "the database did not answer" or "that index is taken".

``store.py`` holds the logic once and asks :func:`dialect_for` for the words. Both drivers are
synchronous and take ``%s`` placeholders; each is imported only when its dialect is used, so a
master on the embedded store needs neither.

Time is always the database's: PostgreSQL ``clock_timestamp()`` (not ``now()``, which is the
transaction's start), MariaDB ``NOW(6)`` (the statement's start) in a session pinned to UTC,
so masters in different time zones compare the same instants.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from agentflow.cluster.sql.url import StoreUrl
from agentflow.errors import ConfigError

__all__ = ["Connection", "Cursor", "Dialect", "Failure", "Sql", "dialect_for"]

Failure = Literal["unavailable", "duplicate"]


class Cursor(Protocol):
    """The DB-API subset both drivers' cursors share."""

    rowcount: int

    def execute(self, query: str, params: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, query: str, params: Sequence[Sequence[Any]], /) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Any: ...
    def close(self) -> Any: ...


class Connection(Protocol):
    """The DB-API subset both drivers' connections share."""

    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Sql:
    """The statements of every store operation. Parameters, in order, are in each comment."""

    lock_lease_share: str  # () take the lease row's share lock (an append's fence)
    lock_lease_update: str  # () take the lease row's exclusive lock (acquire/renew/release)
    lease_row: str  # () -> holder, api_url, epoch, remaining_s (read after the lock is held)
    set_lease: str  # (holder, api_url, epoch, ttl_s) expires_at = db now + ttl
    expire_lease: str  # (holder, epoch) expires_at = db now
    insert_entry: str  # (idx, epoch, data)
    read_entries: str  # (after, limit) -> idx, data ascending
    last_index: str  # () -> max(log max idx, snapshot idx, 0)
    upsert_snapshot: str  # (idx, epoch, data)
    read_snapshot: str  # () -> idx, data
    compact: str  # (through) delete idx <= through and <= the snapshot's idx
    upsert_member: str  # (node_id, api_url, applied, reads_format, version)
    members: str  # () -> node_id, api_url, seen_s_ago, applied, reads_format, version
    forget_members: str  # (unseen_s) delete rows not seen for that long
    read_meta: str  # (k) -> v
    insert_meta: str  # (k, v)
    schema_version: str  # () -> max version or NULL
    insert_schema: str  # (version)
    create_schema_table: str  # ()
    migrate_lock: str  # () -> a truthy first column when the db-wide lock is held
    migrate_unlock: str  # ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialect:
    """One database family: its SQL, its connect call and its error classifier."""

    name: Literal["postgresql", "mysql"]
    sql: Sql
    connect: Callable[[StoreUrl, float], Connection]
    classify: Callable[[BaseException], Failure | None]
    max_packet: Callable[[Connection], int | None]  # bytes one statement may carry, if bounded
    # why an acknowledged commit could still be lost (server settings), or None
    durability: Callable[[Connection], str | None]


_PG = Sql(
    lock_lease_share="SELECT id FROM agentflow_lease WHERE id = 1 FOR SHARE",
    lock_lease_update="SELECT id FROM agentflow_lease WHERE id = 1 FOR UPDATE",
    lease_row=(
        "SELECT holder, api_url, epoch,"
        " EXTRACT(EPOCH FROM (expires_at - clock_timestamp()))::float8"
        " FROM agentflow_lease WHERE id = 1"
    ),
    set_lease=(
        "UPDATE agentflow_lease SET holder = %s, api_url = %s, epoch = %s,"
        " expires_at = clock_timestamp() + make_interval(secs => %s) WHERE id = 1"
    ),
    expire_lease=(
        "UPDATE agentflow_lease SET expires_at = clock_timestamp()"
        " WHERE id = 1 AND holder = %s AND epoch = %s"
    ),
    insert_entry="INSERT INTO agentflow_log (idx, epoch, data) VALUES (%s, %s, %s)",
    read_entries="SELECT idx, data FROM agentflow_log WHERE idx > %s ORDER BY idx LIMIT %s",
    last_index=(
        "SELECT GREATEST(COALESCE((SELECT MAX(idx) FROM agentflow_log), 0),"
        " COALESCE((SELECT idx FROM agentflow_snapshot WHERE id = 1), 0))"
    ),
    upsert_snapshot=(
        "INSERT INTO agentflow_snapshot (id, idx, epoch, data, taken_at)"
        " VALUES (1, %s, %s, %s, clock_timestamp()) ON CONFLICT (id) DO UPDATE SET"
        " idx = EXCLUDED.idx, epoch = EXCLUDED.epoch, data = EXCLUDED.data,"
        " taken_at = EXCLUDED.taken_at"
    ),
    read_snapshot="SELECT idx, data FROM agentflow_snapshot WHERE id = 1",
    compact=(
        "DELETE FROM agentflow_log WHERE idx <= %s"
        " AND idx <= (SELECT idx FROM agentflow_snapshot WHERE id = 1)"
    ),
    upsert_member=(
        "INSERT INTO agentflow_members"
        " (node_id, api_url, seen_at, applied_idx, reads_format, version)"
        " VALUES (%s, %s, clock_timestamp(), %s, %s, %s) ON CONFLICT (node_id) DO UPDATE SET"
        " api_url = EXCLUDED.api_url, seen_at = EXCLUDED.seen_at,"
        " applied_idx = EXCLUDED.applied_idx, reads_format = EXCLUDED.reads_format,"
        " version = EXCLUDED.version"
    ),
    members=(
        "SELECT node_id, api_url, EXTRACT(EPOCH FROM (clock_timestamp() - seen_at))::float8,"
        " applied_idx, reads_format, version FROM agentflow_members ORDER BY node_id"
    ),
    forget_members=(
        "DELETE FROM agentflow_members"
        " WHERE seen_at < clock_timestamp() - make_interval(secs => %s)"
    ),
    read_meta="SELECT v FROM agentflow_meta WHERE k = %s",
    insert_meta="INSERT INTO agentflow_meta (k, v) VALUES (%s, %s)",
    schema_version="SELECT MAX(version) FROM agentflow_schema",
    insert_schema=(
        "INSERT INTO agentflow_schema (version, applied_at) VALUES (%s, clock_timestamp())"
        " ON CONFLICT (version) DO NOTHING"
    ),
    create_schema_table=(
        "CREATE TABLE IF NOT EXISTS agentflow_schema"
        " (version INT PRIMARY KEY, applied_at TIMESTAMPTZ(6) NOT NULL)"
    ),
    # A session-level advisory lock (held across the per-migration transactions), keyed by a
    # constant of our own: b"agentflo" read as a big-endian int64.
    migrate_lock="SELECT pg_advisory_lock(7018690069353884783)",
    migrate_unlock="SELECT pg_advisory_unlock(7018690069353884783)",
)

_MY = Sql(
    lock_lease_share="SELECT id FROM agentflow_lease WHERE id = 1 LOCK IN SHARE MODE",
    lock_lease_update="SELECT id FROM agentflow_lease WHERE id = 1 FOR UPDATE",
    # LOCK IN SHARE MODE again: a locking read sees the latest committed row whatever the
    # isolation level, and re-taking a lock we hold is free.
    lease_row=(
        "SELECT holder, api_url, epoch,"
        " TIMESTAMPDIFF(MICROSECOND, NOW(6), expires_at) / 1e6"
        " FROM agentflow_lease WHERE id = 1 LOCK IN SHARE MODE"
    ),
    set_lease=(
        "UPDATE agentflow_lease SET holder = %s, api_url = %s, epoch = %s,"
        " expires_at = NOW(6) + INTERVAL ROUND(%s * 1000000) MICROSECOND WHERE id = 1"
    ),
    expire_lease=(
        "UPDATE agentflow_lease SET expires_at = NOW(6) WHERE id = 1 AND holder = %s AND epoch = %s"
    ),
    insert_entry=_PG.insert_entry,
    read_entries=_PG.read_entries,
    last_index=_PG.last_index,
    upsert_snapshot=(
        "INSERT INTO agentflow_snapshot (id, idx, epoch, data, taken_at)"
        " VALUES (1, %s, %s, %s, NOW(6)) ON DUPLICATE KEY UPDATE"
        " idx = VALUES(idx), epoch = VALUES(epoch), data = VALUES(data),"
        " taken_at = VALUES(taken_at)"
    ),
    read_snapshot=_PG.read_snapshot,
    compact=_PG.compact,
    upsert_member=(
        "INSERT INTO agentflow_members"
        " (node_id, api_url, seen_at, applied_idx, reads_format, version)"
        " VALUES (%s, %s, NOW(6), %s, %s, %s) ON DUPLICATE KEY UPDATE"
        " api_url = VALUES(api_url), seen_at = VALUES(seen_at),"
        " applied_idx = VALUES(applied_idx), reads_format = VALUES(reads_format),"
        " version = VALUES(version)"
    ),
    members=(
        "SELECT node_id, api_url, TIMESTAMPDIFF(MICROSECOND, seen_at, NOW(6)) / 1e6,"
        " applied_idx, reads_format, version FROM agentflow_members ORDER BY node_id"
    ),
    forget_members=(
        "DELETE FROM agentflow_members"
        " WHERE seen_at < NOW(6) - INTERVAL ROUND(%s * 1000000) MICROSECOND"
    ),
    read_meta=_PG.read_meta,
    insert_meta=_PG.insert_meta,
    schema_version=_PG.schema_version,
    insert_schema="INSERT IGNORE INTO agentflow_schema (version, applied_at) VALUES (%s, NOW(6))",
    create_schema_table=(
        "CREATE TABLE IF NOT EXISTS agentflow_schema"
        " (version INT PRIMARY KEY, applied_at DATETIME(6) NOT NULL)"
        " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    ),
    migrate_lock="SELECT GET_LOCK('agentflow_migrate', @@innodb_lock_wait_timeout)",
    migrate_unlock="SELECT RELEASE_LOCK('agentflow_migrate')",
)


def dialect_for(url: StoreUrl) -> Dialect:
    """The dialect of ``url``, its driver imported; ConfigError when the driver is missing."""
    if url.dialect == "postgresql":
        try:
            import psycopg  # noqa: F401
        except ImportError:
            raise ConfigError(
                f"--store {url.redacted()}: install agentflow[postgresql] (psycopg)"
            ) from None
        return Dialect(name="postgresql", sql=_PG, connect=_pg_connect,
                       classify=_pg_classify, max_packet=lambda _conn: None,
                       durability=_pg_durability)  # fmt: skip
    try:
        import pymysql  # noqa: F401
    except ImportError:
        raise ConfigError(f"--store {url.redacted()}: install agentflow[mysql] (PyMySQL)") from None
    return Dialect(name="mysql", sql=_MY, connect=_my_connect,
                   classify=_my_classify, max_packet=_my_max_packet,
                   durability=_my_durability)  # fmt: skip


def _pg_connect(url: StoreUrl, timeout_s: float) -> Connection:
    import psycopg

    timeout_ms = max(1, int(timeout_s * 1000))
    conn = psycopg.connect(
        host=url.host,
        port=url.port,
        dbname=url.database,
        user=url.user,
        password=url.password,
        connect_timeout=max(2, math.ceil(timeout_s)),  # libpq: whole seconds, at least 2
        # a dead peer: unacknowledged writes give up after the timeout, idle ones are probed
        tcp_user_timeout=timeout_ms,
        keepalives=1,
        keepalives_idle=max(1, math.ceil(timeout_s)),
        keepalives_interval=1,
        keepalives_count=3,
        options=f"-c statement_timeout={timeout_ms} -c lock_timeout={timeout_ms} -c TimeZone=UTC",
        application_name="agentflow-master",
        autocommit=False,
        **_pg_params(url),
    )
    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
    with conn.cursor() as cur:
        # "durable when append returns": a server (or role) that acknowledges commits before
        # the WAL is flushed is overridden for our session; stronger settings are kept.
        cur.execute("SHOW synchronous_commit")
        row = cur.fetchone()
        if row is not None and row[0] == "off":
            cur.execute("SET synchronous_commit = on")
    conn.commit()
    return conn


def _pg_params(url: StoreUrl) -> dict[str, Any]:
    """The URL's query (sslmode and certificate paths: libpq's own keywords)."""
    return dict(url.params)


def _pg_classify(exc: BaseException) -> Failure | None:
    import psycopg
    from psycopg import errors

    if isinstance(exc, errors.UniqueViolation):
        return "duplicate"
    # OperationalError: connection lost or refused, admin shutdown, statement or lock timeout,
    # serialization failure or deadlock (rolled back): the caller may try again.
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return "unavailable"
    return None


def _my_connect(url: StoreUrl, timeout_s: float) -> Connection:
    import pymysql
    from pymysql.constants import CLIENT

    params = dict(url.params)
    ssl = {k.removeprefix("ssl_"): v for k, v in params.items() if k in ("ssl_ca", "ssl_cert",
                                                                         "ssl_key")}  # fmt: skip
    wait_s = max(1, math.ceil(timeout_s))
    conn = pymysql.connect(
        host=url.host,
        port=url.port,
        database=url.database,
        user=url.user or "",
        password=url.password or "",
        connect_timeout=timeout_s,
        # a lock wait may take wait_s; a server that does not answer twice as long is gone
        read_timeout=2 * wait_s + 1,
        write_timeout=2 * wait_s + 1,
        autocommit=False,
        client_flag=CLIENT.FOUND_ROWS,  # rowcount: rows matched, not rows changed
        charset="utf8mb4",
        ssl_ca=ssl.get("ca"),
        ssl_cert=ssl.get("cert"),
        ssl_key=ssl.get("key"),
        ssl_verify_cert=params.get("ssl_verify_cert") == "true" or None,
        ssl_verify_identity=params.get("ssl_verify_identity") == "true",
    )
    with conn.cursor() as cur:
        cur.execute(
            f"SET SESSION time_zone = '+00:00', innodb_lock_wait_timeout = {wait_s},"
            " sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO'"
        )
        cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
    conn.commit()
    return conn


def _my_classify(exc: BaseException) -> Failure | None:
    import pymysql

    if isinstance(exc, pymysql.err.IntegrityError) and exc.args and exc.args[0] == 1062:
        return "duplicate"
    # OperationalError: 2003 refused, 2006/2013 gone or lost, 1205 lock wait timeout,
    # 1213 deadlock (rolled back); InterfaceError: the connection was already closed.
    if isinstance(exc, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        return "unavailable"
    return "unavailable" if isinstance(exc, OSError) else None


def _pg_durability(conn: Connection) -> str | None:
    row = _one(conn, "SELECT current_setting('fsync')")
    return "fsync is off: a commit may be lost when the host crashes" if row[0] == "off" else None


def _my_durability(conn: Connection) -> str | None:
    flush, log_bin, sync_binlog = _one(
        conn, "SELECT @@innodb_flush_log_at_trx_commit, @@log_bin, @@sync_binlog"
    )
    if int(flush) != 1:
        return (
            f"innodb_flush_log_at_trx_commit is {flush}, not 1:"
            " a commit may be lost when the server or host crashes"
        )
    if int(log_bin) and int(sync_binlog) != 1:
        return f"sync_binlog is {sync_binlog}, not 1: the binary log may lose commits on a crash"
    return None


def _one(conn: Connection, sql: str) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetchone()
    finally:
        cur.close()


def _my_max_packet(conn: Connection) -> int | None:
    return int(_one(conn, "SELECT @@max_allowed_packet")[0])
