"""The command log in a SQL database: entries, a snapshot, the writer's lease, the members.

:class:`LogStore` owns one connection and is synchronous: its owner calls it from one thread
of its own (never the event loop). Each method is one transaction. The connection opens on
the first call and, after the database failed to answer (StoreUnavailable), is dropped and
reopened on the next call.

The lease row decides who may write, by the database's clock alone. Every write of the log
(append, snapshot, compaction) first takes the lease row's share lock and checks holder,
epoch and expiry under it; a takeover's exclusive lock therefore waits for a write in flight
to commit, and every write after the takeover sees the new epoch and is refused
(StoreFenced). A new writer that reads ``last_index()`` after its takeover committed sees
every entry a deposed writer ever appended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from agentflow.cluster.sql import migrations
from agentflow.cluster.sql.contract import Lease, LogStoreLike, MemberRow
from agentflow.cluster.sql.dialect import Connection, dialect_for
from agentflow.cluster.sql.url import StoreUrl
from agentflow.errors import AgentFlowError, ConfigError, StoreFenced, StoreUnavailable

__all__ = [
    "MAX_READ_ROWS",
    "PACKET_OVERHEAD_BYTES",
    "Lease",
    "LogStore",
    "MemberRow",
    "too_large",
]

MAX_READ_ROWS = 10_000
# A blob travels escaped in MySQL's text protocol (at worst two bytes for one) inside a
# statement; what a row may hold is checked against max_allowed_packet with this margin.
PACKET_OVERHEAD_BYTES = 4096

T = TypeVar("T")


class LogStore:
    """One connection to the store; see the module's docstring for the contract."""

    def __init__(self, url: StoreUrl, *, timeout_s: float = 5.0) -> None:
        assert timeout_s > 0
        self.url = url
        self.timeout_s = timeout_s
        self._dialect = dialect_for(url)
        self._sql = self._dialect.sql
        self._conn: Connection | None = None
        self._max_packet: int | None = None

    # -- schema -------------------------------------------------------------------------------
    def migrate(self, cluster_id: str) -> str:
        """Create or upgrade the schema; the cluster uid. ConfigError on a cluster id
        mismatch or a schema newer than this code."""
        try:
            return self._call(lambda conn: migrations.migrate(conn, self._dialect, cluster_id))
        except AgentFlowError:
            raise
        except Exception as exc:  # e.g. no right to create tables: the operator's to fix
            raise ConfigError(
                f"store {self.url.redacted()}: the schema could not be made: {self._said(exc)}"
            ) from exc

    # -- the lease ----------------------------------------------------------------------------
    def lease(self) -> Lease:
        return self._tx(self._lease_row)

    def acquire(self, node_id: str, api_url: str, ttl_s: float) -> Lease | None:
        """Take the lease if it expired or is already ours; None while another holds it live.

        A takeover (another holder, or ours after it expired) raises the epoch by one; our
        own live lease is extended at the same epoch."""
        assert ttl_s > 0 and node_id

        def work(cur: Any) -> Lease | None:
            cur.execute(self._sql.lock_lease_update)
            cur.fetchall()
            row = self._lease_row(cur)
            live = row.remaining_s > 0
            if live and row.holder != node_id:
                return None
            epoch = row.epoch if live else row.epoch + 1
            cur.execute(self._sql.set_lease, (node_id, api_url, epoch, ttl_s))
            return self._lease_row(cur)

        return self._tx(work)

    def renew(self, lease: Lease, ttl_s: float) -> Lease:
        """Extend our live lease by ``ttl_s`` from the database's now; StoreFenced when the
        row names another holder or epoch, or expired (an expired lease is never revived)."""
        assert ttl_s > 0

        def work(cur: Any) -> Lease:
            cur.execute(self._sql.lock_lease_update)
            cur.fetchall()
            self._check(cur, lease)
            cur.execute(self._sql.set_lease, (lease.holder, lease.api_url, lease.epoch, ttl_s))
            return self._lease_row(cur)

        return self._tx(work)

    def release(self, lease: Lease) -> None:
        """Expire our lease now (a clean stop: the next master need not wait out the ttl);
        nothing when the row has moved on."""

        def work(cur: Any) -> None:
            cur.execute(self._sql.lock_lease_update)
            cur.fetchall()
            cur.execute(self._sql.expire_lease, (lease.holder, lease.epoch))

        self._tx(work)

    # -- the log ------------------------------------------------------------------------------
    def append(self, lease: Lease, first: int, entries: Sequence[bytes]) -> None:
        """Insert ``entries`` at ``first``, ``first + 1``, ... in one transaction fenced by
        the lease; durable when it returns. StoreFenced on a failed check or a taken index."""
        assert first >= 1
        if not entries:
            return
        for data in entries:
            self._check_size(len(data), "a log entry")

        def work(cur: Any) -> None:
            self._fence(cur, lease)
            rows = [(first + i, lease.epoch, data) for i, data in enumerate(entries)]
            cur.executemany(self._sql.insert_entry, rows)

        self._tx(work, taken_is_fenced=True)

    def read(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` entries with idx > ``after``, ascending."""
        assert 1 <= limit <= MAX_READ_ROWS, limit

        def work(cur: Any) -> list[tuple[int, bytes]]:
            cur.execute(self._sql.read_entries, (after, limit))
            return [(int(idx), bytes(data)) for idx, data in cur.fetchall()]

        return self._tx(work)

    def last_index(self) -> int:
        """The highest idx in the log, or the snapshot's when the log is empty, or 0."""

        def work(cur: Any) -> int:
            cur.execute(self._sql.last_index)
            return int(cur.fetchone()[0])

        return self._tx(work)

    # -- the snapshot -------------------------------------------------------------------------
    def save_snapshot(self, lease: Lease, index: int, data: bytes) -> None:
        """Replace the snapshot with the image at ``index`` (fenced like append)."""
        assert index >= 0
        self._check_size(len(data), "a snapshot")

        def work(cur: Any) -> None:
            self._fence(cur, lease)
            cur.execute(self._sql.upsert_snapshot, (index, lease.epoch, data))

        self._tx(work)

    def compact(self, lease: Lease, through: int) -> int:
        """Delete entries with idx <= ``through`` (never past the snapshot); rows deleted."""

        def work(cur: Any) -> int:
            self._fence(cur, lease)
            cur.execute(self._sql.compact, (through,))
            return max(0, int(cur.rowcount))

        return self._tx(work)

    def snapshot(self) -> tuple[int, bytes] | None:
        def work(cur: Any) -> tuple[int, bytes] | None:
            cur.execute(self._sql.read_snapshot)
            row = cur.fetchone()
            return None if row is None else (int(row[0]), bytes(row[1]))

        return self._tx(work)

    # -- the members --------------------------------------------------------------------------
    def heartbeat(
        self, node_id: str, api_url: str, applied: int, reads_format: int, version: str
    ) -> None:
        def work(cur: Any) -> None:
            params = (node_id, api_url, applied, reads_format, version)
            cur.execute(self._sql.upsert_member, params)

        self._tx(work)

    def members(self) -> list[MemberRow]:
        def work(cur: Any) -> list[MemberRow]:
            cur.execute(self._sql.members)
            return [
                MemberRow(
                    node_id=str(n),
                    api_url=str(u),
                    seen_s_ago=float(s),
                    applied=int(a),
                    reads_format=int(f),
                    version=str(v),
                )
                for n, u, s, a, f, v in cur.fetchall()
            ]

        return self._tx(work)

    def forget_members(self, lease: Lease, unseen_s: float) -> int:
        """Delete the rows of members not seen for ``unseen_s`` (fenced: the writer's job);
        rows deleted."""
        assert unseen_s > 0

        def work(cur: Any) -> int:
            self._fence(cur, lease)
            cur.execute(self._sql.forget_members, (unseen_s,))
            return max(0, int(cur.rowcount))

        return self._tx(work)

    def entry_limit(self) -> int | None:
        """The largest entry or snapshot, in bytes, that one row may carry as the server said
        at the last connect (MariaDB's max_allowed_packet); None: no limit known. No I/O."""
        limit = self._max_packet
        return None if limit is None else max(0, (limit - PACKET_OVERHEAD_BYTES) // 2)

    def durability_warning(self) -> str | None:
        """Why the server might lose an acknowledged commit (fsync off, MariaDB's
        innodb_flush_log_at_trx_commit != 1, sync_binlog != 1 with a binary log), or None:
        for the master to log at start; it is the server's operator's to fix."""
        return self._call(self._dialect.durability)

    def close(self) -> None:
        self._drop()

    # -- inside -------------------------------------------------------------------------------
    def _lease_row(self, cur: Any) -> Lease:
        cur.execute(self._sql.lease_row)
        holder, api_url, epoch, remaining = cur.fetchone()
        return Lease(str(holder), str(api_url), int(epoch), float(remaining))

    def _check(self, cur: Any, lease: Lease) -> None:
        now = self._lease_row(cur)
        if now.holder != lease.holder or now.epoch != lease.epoch:
            hint: dict[str, Any] = {"leader_known": False}
            if now.remaining_s > 0:
                hint = {"leader_id": now.holder, "leader_url": now.api_url, "leader_known": True}
            raise StoreFenced(
                f"the store's lease is {now.holder or 'nobody'}'s at epoch {now.epoch},"
                f" not {lease.holder}'s at epoch {lease.epoch}",
                **hint,
            )
        if now.remaining_s <= 0:
            raise StoreFenced(
                f"{lease.holder}'s lease at epoch {lease.epoch} expired", leader_known=False
            )

    def _fence(self, cur: Any, lease: Lease) -> None:
        """Share-lock the lease row, then check it: a takeover waits for our commit."""
        cur.execute(self._sql.lock_lease_share)
        cur.fetchall()
        self._check(cur, lease)

    def _check_size(self, size: int, what: str) -> None:
        self._connection()  # a new connection reads the server's limit
        fits = self.entry_limit()
        if fits is not None and size > fits:
            raise ConfigError(too_large(what, size, self._max_packet or 0))

    def _tx(self, work: Callable[[Any], T], *, taken_is_fenced: bool = False) -> T:
        """``work(cursor)`` in one transaction, committed; see :meth:`_call` for errors."""

        def run(conn: Connection) -> T:
            cur = conn.cursor()
            try:
                result = work(cur)
            finally:
                cur.close()
            conn.commit()
            return result

        return self._call(run, taken_is_fenced=taken_is_fenced)

    def _call(self, run: Callable[[Connection], T], *, taken_is_fenced: bool = False) -> T:
        """``run(conn)``; rolls back on our own errors, drops the connection when the
        database did not answer (StoreUnavailable); with ``taken_is_fenced`` (an append)
        a unique key already taken is StoreFenced: another writer was there first."""
        conn = self._connection()
        try:
            return run(conn)
        except AgentFlowError:
            self._rollback()
            raise
        except Exception as exc:
            failure = self._dialect.classify(exc)
            if failure == "duplicate" and taken_is_fenced:
                self._rollback()
                raise StoreFenced(
                    "an index to append is already in the log: another writer was there first",
                    leader_known=False,
                ) from exc
            self._drop()
            if failure == "unavailable":
                raise self._unavailable(exc) from exc
            raise
        except BaseException:  # interrupted mid-transaction: never reuse that session
            self._drop()
            raise

    def _connection(self) -> Connection:
        if self._conn is None:
            try:
                self._conn = self._dialect.connect(self.url, self.timeout_s)
                self._max_packet = self._dialect.max_packet(self._conn)
                self._conn.commit()
            except Exception as exc:
                self._drop()
                if self._dialect.classify(exc) != "unavailable":
                    raise
                raise self._unavailable(exc) from exc
        return self._conn

    def _unavailable(self, exc: Exception) -> StoreUnavailable:
        said = self._said(exc)
        error = StoreUnavailable(f"store {self.url.redacted()} did not answer: {said}")
        error.reason = said
        return error

    def _said(self, exc: BaseException) -> str:
        """The first line of what the driver said, the password hidden if it is quoted (one
        shorter than 4 characters would mangle the text, not hide anything)."""
        lines = str(exc).strip().splitlines()
        said = " ".join(lines[0].split()) if lines else type(exc).__name__
        if self.url.password and len(self.url.password) >= 4:
            said = said.replace(self.url.password, "***")
        return said

    def _rollback(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            except Exception:  # the connection is gone too: the next call reconnects
                self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # closing a broken connection may fail; it is gone either way
            with contextlib.suppress(Exception):
                conn.close()


def too_large(what: str, size: int, max_packet: int) -> str:
    """Why a row of ``size`` bytes cannot be written under ``max_packet``."""
    return (
        f"{what} of {size} bytes does not fit the server's max_allowed_packet ({max_packet}"
        f" bytes; a row needs twice its size plus {PACKET_OVERHEAD_BYTES}): raise"
        " max_allowed_packet on the server (64M or more)"
    )


def _conforms(store: LogStore) -> LogStoreLike:
    return store  # mypy checks here that LogStore makes every call the SQL log needs
