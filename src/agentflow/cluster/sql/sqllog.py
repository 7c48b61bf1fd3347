"""The command log in a SQL database: one writer holding a fenced lease, the others tailing.

:class:`SqlLog` implements :class:`agentflow.cluster.seam.MasterLog` (design 20 §3) over a
store (:class:`~agentflow.cluster.sql.contract.LogStoreLike`) called on a thread of its own.
One loop task runs the master's role:

- **follower**: every ``poll_s`` it reads the entries after its applied index and applies them
  (a gap — entries compacted away — loads the store's snapshot). Every ``renew_s`` it reads the
  lease; expired (or still its own, after a failed call) it tries to take it, and having won it
  reads to the end of the table and leads. It refreshes its member row.
- **leader** (the writer): it appends the proposals waiting, all of them up to ``max_batch``
  in one transaction fenced by its lease (group commit), applies them once the store says they
  are durable and answers their proposers; every ``renew_s`` it renews the lease. A fenced
  write, a renewal refused, or its own monotonic deadline (start of the last renew call +
  ttl - margin, always before the database's expiry) passed: it steps down (a renewal the
  database did not answer is tried again until that deadline, so a blip of the database
  does not drop every worker session). A batch whose
  commit call failed (the database did not answer) fails with "the outcome is unknown" and the
  log re-reads the table as a follower: what did land is applied once, from there.

The clock and the sleeps are a :class:`~agentflow.cluster.sql.logconfig.Pacer`, so tests drive
time; the lease itself is timed by the database's clock.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from agentflow._version import __version__
from agentflow.cluster.diskthread import DiskThread
from agentflow.cluster.image import Member
from agentflow.cluster.proposals import committed
from agentflow.cluster.seam import EventSink, LeaderWatcher, MasterLog
from agentflow.cluster.sql.contract import Lease, LogStoreLike, MemberRow
from agentflow.cluster.sql.logconfig import MonotonicPacer, Pacer, SqlLogConfig
from agentflow.cluster.sql.migrations import LATEST as SCHEMA_VERSION
from agentflow.cluster.sql.proposals import Proposals, fail_batch
from agentflow.cluster.sql.replica import Replica
from agentflow.cluster.sql.sqlstatus import (
    aged,
    live_members,
    sql_raft_status,
    sql_status,
    written_format,
)
from agentflow.cluster.sql.tenure import Tenure
from agentflow.cluster.timings import RaftTimings
from agentflow.errors import (
    AgentFlowError,
    ConfigError,
    ConflictError,
    NotLeaderError,
    PayloadTooLargeError,
    StoreFenced,
    StoreUnavailable,
    UnavailableError,
)
from agentflow.raft import ConfChangeType, StateRole, Status
from agentflow.state import Command, StateMachine
from agentflow.state.envelope import LOG_FORMATS_READ

__all__ = ["SqlLog", "SqlLogConfig"]

log = logging.getLogger(__name__)

NO_MEMBERSHIP = (
    "on a SQL store, masters join by starting with the same --store; there is no membership"
    " to change"
)


def _exit_on_crash(exc: BaseException) -> None:
    """A dead loop leaves a master that answers but never commits: exit instead, loudly, so
    another master takes the lease and a supervisor restarts this one (as RaftLog does)."""
    logging.shutdown()
    os._exit(70)


class SqlLog:
    """Implements :class:`agentflow.cluster.seam.MasterLog` over a SQL store."""

    def __init__(
        self,
        config: SqlLogConfig,
        machine: StateMachine,
        store: LogStoreLike,
        *,
        pacer: Pacer | None = None,
        on_crash: Callable[[BaseException], None] = _exit_on_crash,
    ) -> None:
        self.config = config
        self._machine = machine
        self._store = store
        self._pacer = pacer or MonotonicPacer()
        self._on_crash = on_crash
        self._thread = DiskThread(f"sql-store-{config.node_id}")
        self.timings = RaftTimings()  # read by /metrics: fsync is each append's transaction
        self._sinks: list[EventSink] = []
        self._watchers: list[LeaderWatcher] = []
        self.replica = Replica(
            machine,
            store,
            self._thread.run,
            sinks=self._sinks,
            timings=self.timings,
            read_batch=config.read_batch,
        )
        self._proposals = Proposals(config.max_pending)
        self.tenure = Tenure(
            node_id=config.node_id,
            api_url=config.api_url,
            ttl_s=config.lease_ttl_s,
            margin_s=config.margin_s,
        )
        self._next_renew = 0.0  # when the lease is next renewed (or read, by a follower)
        self._rows: list[MemberRow] = []  # the member rows as last read...
        self._rows_at = 0.0  # ...at this pacer time
        self.cluster_uid = ""
        self.store_warning: str | None = None  # the store's durability setting found unsafe
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._snapshotting: asyncio.Task[None] | None = None
        self._trouble: str | None = None  # the store's last failure, logged once
        self._closed = False

    # -- the command log ---------------------------------------------------------------------

    @property
    def machine(self) -> StateMachine:
        return self._machine

    @property
    def is_leader(self) -> bool:
        return self.tenure.leads

    @property
    def epoch(self) -> int:
        """The highest lease epoch this master has seen: the log's "term"."""
        return self.tenure.epoch

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    async def propose(self, command: Command) -> Any:
        if self._closed:
            raise UnavailableError("master is shutting down")
        if not self.is_leader:
            raise self.not_leader()
        future = self._proposals.add(command)
        self._wake.set()
        return await committed(
            future,
            timeout_s=self.config.propose_timeout_s,
            observe=self.timings.commit,
            late="the command was not committed in time (the store is slow or unreachable);"
            " the outcome is unknown",
            hint=self._leader_hint(),
        )

    async def read_barrier(self) -> None:
        """The writer: its lease is still its own. A follower: everything the table held when
        the call began is applied (a linearizable read from any master)."""
        if self._closed:
            raise UnavailableError("master is shutting down")
        if self.is_leader:
            if self._pacer.now() < self.tenure.deadline:
                return
            raise UnavailableError(
                f"cannot confirm the latest state: {self.config.node_id}'s lease is not renewed",
                **self._leader_hint(),
            )
        target = await self._thread.run(self._store.last_index)
        await self.replica.catch_up(target)

    # -- the master's view -------------------------------------------------------------------

    @property
    def role(self) -> StateRole:
        return StateRole.LEADER if self.is_leader else StateRole.FOLLOWER

    @property
    def leader_id(self) -> str | None:
        return self.tenure.leader_id(self._pacer.now())

    @property
    def leader_url(self) -> str | None:
        return self.tenure.leader_url(self._pacer.now())

    @property
    def rows(self) -> list[MemberRow]:
        """The member rows as last read, each one's age counted on to now: while the store
        does not answer this master, the others' rows grow old (they may be gone)."""
        return aged(self._rows, self._pacer.now() - self._rows_at)

    @property
    def members(self) -> dict[str, Member]:
        """The masters seen recently (their rows refreshed within ``member_live_s``)."""
        return live_members(self.config, self.rows)

    @property
    def raft_status(self) -> Status:
        return sql_raft_status(self)

    def _leader_hint(self) -> dict[str, Any]:
        return self.tenure.hint(self._pacer.now())

    def not_leader(self) -> NotLeaderError:
        leader = self.leader_id
        why = f"; the leader is {leader}" if leader else "; no leader is known"
        return NotLeaderError(
            f"master {self.config.node_id} is not the leader{why}", **self._leader_hint()
        )

    def on_leadership(self, watcher: LeaderWatcher) -> None:
        self._watchers.append(watcher)

    def log_format(self) -> int:
        return written_format(self.config.node_id, self.rows, self.config.member_live_s)

    def status(self) -> dict[str, Any]:
        return sql_status(self)

    async def change_membership(
        self, kind: ConfChangeType, node_id: str, raft_address: str = "", api_url: str = ""
    ) -> dict[str, Any]:
        raise ConflictError(NO_MEMBERSHIP)

    async def add_voter(self, node_id: str, raft_address: str, api_url: str) -> dict[str, Any]:
        raise ConflictError(NO_MEMBERSHIP)

    async def transfer_leadership(self, to: str) -> None:
        raise ConflictError(
            "on a SQL store, leadership is a lease: stop the writer and another takes it over"
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Create or upgrade the schema, load the snapshot and replay the table, then run the
        loop. A store that refuses this master (another cluster id, a newer schema) or does
        not answer fails the start."""
        if self._task is not None:
            return
        self._closed = False
        try:
            await self._open()
        except StoreUnavailable as exc:  # a wrong password, no such database, no server
            raise ConfigError(
                f"cannot start on the store {self.config.store_url}: {exc.reason or exc}"
            ) from None
        self._next_renew = self._pacer.now()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"sql-log-{self.config.node_id}"
        )
        self._task.add_done_callback(self._ended)

    async def _open(self) -> None:
        """Migrate, say what the store is, load the snapshot and replay the table."""
        self.cluster_uid = await self._thread.run(self._store.migrate, self.config.cluster_id)
        log.info(
            "master %s on the store %s: schema version %d, cluster uid %s",
            self.config.node_id,
            self.config.store_url,
            SCHEMA_VERSION,
            self.cluster_uid,
        )
        warning = await self._thread.run(self._store.durability_warning)
        if warning is not None:
            log.warning("the store %s may lose commits: %s", self.config.store_url, warning)
        self.store_warning = warning
        await self._heartbeat()  # a writer sees what this master reads before it replays
        await self.replica.load_snapshot()
        await self.replica.catch_up(await self._thread.run(self._store.last_index))
        log.info(
            "sql log %s: applied %d (snapshot %d)",
            self.config.node_id,
            self.replica.applied,
            self.replica.snapshot_index,
        )

    async def close(self) -> None:
        """Stop the loop, fail what waits, release the lease if held (the next master takes
        over at once) and close the store."""
        if self._closed:
            return
        self._closed = True
        for task in (self._task, self._snapshotting):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        self._proposals.fail_all(UnavailableError("master is shutting down"))
        lease = self.tenure.drop()
        try:
            if lease is not None:
                await self._thread.run(self._store.release, lease)
            await self._thread.run(self._store.close)
        except AgentFlowError as exc:
            log.warning("closing the store: %s", exc)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.shutdown)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.critical("the sql log's loop failed; exiting", exc_info=task.exception())
        self._on_crash(task.exception() or RuntimeError("sql log loop"))

    # -- the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                if self.is_leader:
                    await self._lead_once()
                else:
                    await self._follow_once()
                self._trouble = None
            except UnavailableError as exc:  # the store did not answer, or its log has a gap
                if str(exc) != self._trouble:
                    log.warning("master %s: %s", self.config.node_id, exc)
                self._trouble = str(exc)
                await self._pacer.sleep(self.config.poll_s)

    async def _follow_once(self) -> None:
        await self.replica.catch_up()
        if self._pacer.now() >= self._next_renew:
            await self._check_lease()
        if not self.is_leader:
            await self._nap(self.config.poll_s)

    async def _check_lease(self) -> None:
        """Read the lease; take it when it lapsed (or is still ours); refresh the member row."""
        started = self._pacer.now()
        self._next_renew = started + self.config.renew_s
        lease = await self._thread.run(self._store.lease)
        self._saw(lease, started)
        if lease.remaining_s <= 0 or lease.holder == self.config.node_id:
            if lease.remaining_s <= 0:  # a campaign, in Raft's words (elections_total)
                self.timings.elections += 1
            won = await self._thread.run(
                self._store.acquire,
                self.config.node_id,
                self.config.api_url,
                self.config.lease_ttl_s,
            )
            if won is not None:
                await self._take_over(won, started)
                return
        await self._heartbeat()

    async def _take_over(self, lease: Lease, started: float) -> None:
        """Won the lease: read to the end of the table (every entry any earlier writer
        appended is there: its appends are fenced), learn what the members read, lead."""
        self._saw(lease, started)
        await self.replica.catch_up(await self._thread.run(self._store.last_index))
        await self._heartbeat()
        if self._pacer.now() >= self.tenure.deadline_after(started):
            return  # caught up too late to lead on this lease; the next check takes it again
        self.tenure.hold(lease, started)
        log.info(
            "master %s leads (epoch %d) at index %d",
            self.config.node_id,
            lease.epoch,
            self.replica.applied,
        )
        for watcher in self._watchers:
            watcher(True)

    def _step_down(self, why: str) -> None:
        if self.tenure.drop() is None:
            return
        self._next_renew = self._pacer.now()  # who leads now is read again at once
        log.warning("master %s steps down: %s", self.config.node_id, why)
        self._proposals.fail_all(self.not_leader())
        for watcher in self._watchers:
            watcher(False)

    async def _lead_once(self) -> None:
        now = self._pacer.now()
        if now >= self.tenure.deadline:
            self._step_down("its lease ran out before it could renew it")
            return
        if now >= self._next_renew:
            await self._renew()
            return
        if self._proposals and self._snapshotting is None:  # (a snapshot holds applying)
            await self._commit_batch()
            self._maybe_snapshot()
            return
        await self._nap(self._next_renew - now)

    async def _renew(self) -> None:
        held = self.tenure.held
        assert held is not None
        started = self._pacer.now()
        self._next_renew = started + self.config.renew_s
        try:
            lease = await self._thread.run(self._store.renew, held, self.config.lease_ttl_s)
        except StoreFenced as exc:
            self._step_down(f"its lease was taken: {exc}")
            return
        except StoreUnavailable as exc:  # tried again at the next renewal, until the deadline
            log.warning("master %s could not renew its lease: %s", self.config.node_id, exc)
            return
        self.tenure.hold(lease, started)
        await self._heartbeat()

    async def _commit_batch(self) -> None:
        lease = self.tenure.held
        assert lease is not None
        batch = self._proposals.take(self.config.max_batch)
        if not batch:
            return
        try:
            await self.replica.commit(lease, batch, self.log_format())
        except StoreFenced as exc:  # nothing of the batch landed: the transaction rolled back
            self._step_down(f"its append was fenced: {exc}")
            fail_batch(batch, self.not_leader())
        except StoreUnavailable as exc:
            self._step_down(f"the store did not answer an append: {exc}")
            fail_batch(batch, _outcome_unknown(exc))
        except ConfigError as exc:  # a row over the server's limit (refused before sending)
            log.error("master %s: an append was refused: %s", self.config.node_id, exc)
            fail_batch(batch, PayloadTooLargeError(str(exc)))
        except asyncio.CancelledError:
            fail_batch(batch, _outcome_unknown(UnavailableError("master is shutting down")))
            raise

    def _maybe_snapshot(self) -> None:
        """Take a snapshot if ``snapshot_every`` entries were applied since the last one, on a
        task: the loop goes on renewing the lease while the machine is imaged."""
        due = self.replica.applied - self.replica.snapshot_index >= self.config.snapshot_every
        lease = self.tenure.held
        if due and self._snapshotting is None and lease is not None:
            self._snapshotting = asyncio.get_running_loop().create_task(
                self._snapshot(lease), name=f"sql-snapshot-{self.config.node_id}"
            )

    async def _snapshot(self, lease: Lease) -> None:
        voters = frozenset(self.members)
        try:
            await self.replica.take_snapshot(lease, voters, self.config.keep_after_snapshot)
        except StoreFenced as exc:
            self._step_down(f"its snapshot was fenced: {exc}")
        except AgentFlowError as exc:  # tried again after snapshot_every more entries
            log.error("taking a snapshot failed; the log is kept: %s", exc)
            self.replica.snapshot_index = self.replica.applied
        finally:
            self._snapshotting = None
            self._wake.set()  # the proposals held back meanwhile

    async def _heartbeat(self) -> None:
        await self._thread.run(
            self._store.heartbeat,
            self.config.node_id,
            self.config.api_url,
            self.replica.applied,
            LOG_FORMATS_READ[1],
            __version__,
        )
        self._rows = await self._thread.run(self._store.members)
        self._rows_at = self._pacer.now()

    def _saw(self, lease: Lease, at: float) -> None:
        if self.tenure.saw(lease, at):
            self.timings.note_leader(lease.holder, lease.epoch, changed=True)

    async def _nap(self, seconds: float) -> None:
        """Sleep ``seconds`` on the pacer, or until a proposal arrives."""
        if seconds > 0 and not self._wake.is_set():
            sleeper = asyncio.ensure_future(self._pacer.sleep(seconds))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()
        self._wake.clear()


def _outcome_unknown(exc: AgentFlowError) -> UnavailableError:
    return UnavailableError(
        f"the store did not confirm the commit ({exc}); the outcome is unknown: read the"
        " state again before retrying"
    )


def _conforms(log: SqlLog) -> MasterLog:
    return log  # mypy checks here that SqlLog implements the whole seam
