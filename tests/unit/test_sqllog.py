"""The SQL log's own logic (design 20 §3) over an in-process double of its store.

Every master here is a :class:`SqlLog` over one :class:`DictDatabase`, paced by a fake clock
that moves only when every log's loop sleeps (``run_until``): leases lapse, renewals and polls
happen in fake seconds, never by the wall clock. The real store, against real PostgreSQL and
MariaDB, is tested in tests/sql.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from agentflow import faults
from agentflow.cluster.memlog import MemoryLog
from agentflow.cluster.sql.contract import Lease
from agentflow.cluster.sql.logconfig import SqlLogConfig
from agentflow.cluster.sql.migrations import LATEST as SCHEMA_VERSION
from agentflow.cluster.sql.replica import Replica
from agentflow.cluster.sql.sqllog import SqlLog
from agentflow.cluster.sql.tenure import Tenure
from agentflow.cluster.timings import RaftTimings
from agentflow.errors import (
    ConfigError,
    ConflictError,
    NotLeaderError,
    PayloadTooLargeError,
    UnavailableError,
)
from agentflow.raft import ConfChangeType, StateRole
from agentflow.state import StateMachine
from agentflow.state.commands import Command, NewTask, RegisterWorker, SubmitTasks
from agentflow.state.envelope import LOG_FORMAT
from tests.dictstore import DictDatabase, DictStore, FakeClock, run_until


async def run_inline(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def register(n: int) -> RegisterWorker:
    return RegisterWorker(
        now_ms=1_700_000_000_000 + n,
        worker_id=f"w{n}",
        group="default",
        slots=1,
        resources={},
        labels={},
        hostname="h",
    )


@dataclass
class Cluster:
    """Masters over one database, on one fake clock."""

    clock: FakeClock = field(default_factory=FakeClock)
    db: DictDatabase = field(init=False)
    logs: list[SqlLog] = field(default_factory=list)
    crashes: list[BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.db = DictDatabase(clock=self.clock.now)

    async def start(self, node_id: str, **settings: float) -> SqlLog:
        config = SqlLogConfig(
            node_id=node_id,
            api_url=f"http://{node_id}:6767",
            store_url="dict://test",
            **settings,  # type: ignore[arg-type]
        )
        log = SqlLog(
            config,
            StateMachine(),
            DictStore(self.db),
            pacer=self.clock,
            on_crash=self.crashes.append,
        )
        await log.start()
        self.logs.append(log)
        return log

    @property
    def running(self) -> int:
        return sum(1 for log in self.logs if not log._closed)

    async def until(self, condition: Callable[[], bool]) -> None:
        await run_until(condition, self.clock, self.running, invariant=self.one_writer)

    def one_writer(self) -> None:
        """At no instant do two masters believe they write (the fake clock is everyone's), and
        the writer has applied the whole table whenever it is not in the middle of a commit."""
        leaders = self.leaders()
        assert len(leaders) <= 1, [log.config.node_id for log in leaders]
        for log in leaders:
            if not log.replica.lock.locked():
                assert log.machine.applied_index == self.db.last_index()

    def leaders(self) -> list[SqlLog]:
        return [log for log in self.logs if log.is_leader]

    async def propose(self, log: SqlLog, *commands: Command) -> list[object]:
        """Propose ``commands`` at once, moving the clock while they wait."""
        tasks = [asyncio.ensure_future(log.propose(c)) for c in commands]
        try:
            await self.until(lambda: all(t.done() for t in tasks))
        finally:  # (a failed run leaves none behind to be reported at exit)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return [t.result() if t.exception() is None else t.exception() for t in tasks]

    async def close(self) -> None:
        for log in self.logs:
            await log.close()
        assert self.crashes == []


@pytest.fixture
async def cluster() -> AsyncIterator[Cluster]:
    one = Cluster()
    yield one
    await one.close()


async def two_masters(cluster: Cluster, **settings: float) -> tuple[SqlLog, SqlLog]:
    a = await cluster.start("m1", **settings)
    await cluster.until(lambda: a.is_leader)
    b = await cluster.start("m2", **settings)
    await cluster.until(lambda: b.leader_id == "m1")
    return a, b


async def test_one_of_two_masters_leads_and_both_apply_the_same_log(cluster: Cluster) -> None:
    a, b = await two_masters(cluster)
    assert cluster.leaders() == [a] and b.role is StateRole.FOLLOWER
    assert b.leader_url == "http://m1:6767"
    await cluster.propose(a, *(register(n) for n in range(20)))
    await b.read_barrier()
    assert b.machine.applied_index == a.machine.applied_index == 20
    assert b.machine.digest() == a.machine.digest()
    assert sorted(b.machine.workers) == sorted(f"w{n}" for n in range(20))


async def test_a_follower_refuses_proposals_naming_the_leader(cluster: Cluster) -> None:
    _a, b = await two_masters(cluster)
    with pytest.raises(NotLeaderError) as refused:
        await b.propose(register(1))
    assert refused.value.extra["leader_id"] == "m1"
    assert refused.value.extra["leader_url"] == "http://m1:6767"


async def test_proposals_waiting_together_share_one_append(cluster: Cluster) -> None:
    a = await cluster.start("m1", max_batch=16)
    await cluster.until(lambda: a.is_leader)
    before = cluster.db.appends
    results = await cluster.propose(a, *(register(n) for n in range(64)))
    assert not any(isinstance(r, BaseException) for r in results)
    appends = cluster.db.appends - before
    assert 4 <= appends <= 8, appends  # 64 proposals, at most 16 a transaction
    assert a.machine.applied_index == 64 == max(cluster.db.log)


async def test_the_before_apply_crash_point_is_reached_committed_and_not_applied(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AGENTFLOW_TEST_CRASH_AT=before_apply kills a SQL-store master there too (e2e:
    test_inline_kill9 under AGENTFLOW_E2E_STORE); here the point only records what it saw."""
    a = await cluster.start("m1")
    await cluster.until(lambda: a.is_leader)
    seen: list[tuple[str, int, int]] = []
    monkeypatch.setattr(faults, "ARMED", frozenset({"before_apply"}))
    monkeypatch.setattr(
        faults,
        "reached",
        lambda point: seen.append((point, cluster.db.last_index(), a.machine.applied_index)),
    )
    await cluster.propose(a, register(1))
    assert seen == []  # only a submit reaches it
    task = NewTask(id="t1", title="t1", description="", spec={"command": "true"})
    await cluster.propose(a, SubmitTasks(now_ms=1, tasks=[task]))
    assert seen == [("before_apply", 2, 1)]
    assert a.machine.applied_index == 2


async def test_a_follower_read_barrier_applies_everything_committed_before(
    cluster: Cluster,
) -> None:
    a, b = await two_masters(cluster, poll_s=100.0)  # b would not poll on its own in time
    await cluster.propose(a, *(register(n) for n in range(5)))
    assert b.machine.applied_index < 5  # nothing moved the clock to b's next poll
    await b.read_barrier()
    assert b.machine.applied_index == 5 and b.machine.digest() == a.machine.digest()


async def test_a_closed_leader_releases_the_lease_and_the_other_leads_at_once(
    cluster: Cluster,
) -> None:
    a, b = await two_masters(cluster)
    await cluster.propose(a, register(1))
    closed_at = cluster.clock.now()
    await a.close()
    assert cluster.db.lease_now().remaining_s <= 0
    await cluster.until(lambda: b.is_leader)
    # Within one lease check, well before the lease would have run out. (A follower checks
    # at its first poll at or after renew_s: floats summed in poll steps may land just short.)
    assert cluster.clock.now() - closed_at <= b.config.renew_s + b.config.poll_s
    assert cluster.db.epoch == 2 and b.epoch == 2
    await cluster.propose(b, register(2))
    assert b.machine.applied_index == 2
    # Each took a lapsed lease once: agentflow_raft_elections_total, as a Raft campaign.
    assert a.timings.elections == 1 and b.timings.elections == 1


async def test_a_lagging_follower_reads_the_whole_table_before_it_writes(
    cluster: Cluster,
) -> None:
    a, b = await two_masters(cluster, poll_s=100.0)  # b does not poll while a writes
    await cluster.propose(a, *(register(n) for n in range(5)))
    assert b.machine.applied_index == 0
    await a.close()
    await cluster.until(lambda: b.is_leader)
    assert b.machine.applied_index == 5 and b.machine.digest() == a.machine.digest()
    [result] = await cluster.propose(b, register(6))
    assert result["worker_id"] == "w6" and b.machine.applied_index == 6  # type: ignore[index]


async def test_a_deposed_leader_applies_nothing_and_fails_its_proposals(
    cluster: Cluster,
) -> None:
    a, b = await two_masters(cluster)
    await cluster.propose(a, register(1))
    # Another master took the lease while m1 knew nothing of it (m1 stalled past its expiry).
    cluster.db.expire()
    assert DictStore(cluster.db).acquire("m3", "http://m3:6767", 60.0) is not None
    digest = a.machine.digest()
    [result] = await cluster.propose(a, register(2))
    assert isinstance(result, NotLeaderError)
    assert not a.is_leader and a.machine.applied_index == 1 and a.machine.digest() == digest
    assert max(cluster.db.log) == 1
    await cluster.until(lambda: a.leader_id == "m3" and b.leader_id == "m3")


async def test_a_leader_that_cannot_renew_steps_down_before_the_lease_ends(
    cluster: Cluster,
) -> None:
    a = await cluster.start("m1")
    await cluster.until(lambda: a.is_leader)
    expires_at = cluster.db.expires_at
    heard: list[bool] = []
    a.on_leadership(heard.append)
    cluster.db.down = True
    await cluster.until(lambda: not a.is_leader)
    assert cluster.clock.now() < expires_at + a.config.renew_s  # by its own deadline
    assert heard == [False]
    with pytest.raises(NotLeaderError):
        await a.propose(register(1))
    # The database comes back only once the lease has lapsed in its clock. (Coming back
    # earlier, it would still hold m1's lease; how far the fake clock got by then depended on
    # how the threads were scheduled, and a loaded CI run saw epoch 1 kept.)
    await cluster.until(lambda: cluster.clock.now() > expires_at)
    cluster.db.down = False
    await cluster.until(lambda: a.is_leader)  # the lease lapsed: taken again, a new epoch
    assert a.epoch == 2 and heard == [False, True]


async def test_a_writer_cut_off_from_the_store_is_replaced_and_follows(cluster: Cluster) -> None:
    a, b = await two_masters(cluster)
    await cluster.propose(a, register(1))
    a_store = a._store
    assert isinstance(a_store, DictStore)
    a_store.closed = True  # m1's connection is dead; m2's is fine
    expires_at = cluster.db.expires_at
    await cluster.until(lambda: b.is_leader)  # (never two writers: checked at every step)
    assert cluster.clock.now() >= expires_at and b.epoch == 2
    await cluster.propose(b, register(2))
    a_store.closed = False
    await cluster.until(lambda: a.machine.applied_index == 2 and a.leader_id == "m2")
    assert a.machine.digest() == b.machine.digest() and not a.is_leader


@pytest.mark.parametrize("landed", [False, True])
async def test_a_commit_whose_answer_is_lost_fails_as_unknown_and_resyncs(
    cluster: Cluster, landed: bool
) -> None:
    a, b = await two_masters(cluster)
    await cluster.propose(a, register(1))
    cluster.db.fail_next("append", landed=landed)
    [result] = await cluster.propose(a, register(2))
    assert isinstance(result, UnavailableError) and not isinstance(result, NotLeaderError)
    assert "outcome is unknown" in str(result)
    # m1 still holds a live lease: it reads the table again, then leads again.
    await cluster.until(lambda: a.is_leader and a.machine.applied_index == max(cluster.db.log))
    assert a.machine.applied_index == (2 if landed else 1)
    assert ("w2" in a.machine.workers) is landed  # applied once, if it landed
    await cluster.propose(a, register(3))
    await b.read_barrier()
    assert b.machine.digest() == a.machine.digest()
    assert b.machine.applied_index == a.machine.applied_index == (3 if landed else 2)


async def test_snapshots_compact_the_table_and_a_new_master_starts_from_one(
    cluster: Cluster,
) -> None:
    a = await cluster.start("m1", snapshot_every=10, keep_after_snapshot=3)
    await cluster.until(lambda: a.is_leader)
    for n in range(25):
        await cluster.propose(a, register(n))
    assert cluster.db.snapshot_row is not None and cluster.db.snapshot_row[0] == 20
    assert min(cluster.db.log) == 18 and max(cluster.db.log) == 25  # 20 - 3 compacted
    b = await cluster.start("m2")
    assert b.replica.snapshot_index == 20 and b.machine.applied_index == 25
    assert b.machine.digest() == a.machine.digest()
    assert b.status()["snapshot_index"] == 20


async def test_a_lagging_follower_reads_past_the_compacted_log_through_the_snapshot(
    cluster: Cluster,
) -> None:
    settings = {"poll_s": 100.0, "snapshot_every": 5, "keep_after_snapshot": 0}
    a, b = await two_masters(cluster, **settings)  # b does not poll while a writes
    for n in range(12):
        await cluster.propose(a, register(n))
    await cluster.until(lambda: a.replica.snapshot_index == 10)
    assert min(cluster.db.log) == 11 and b.machine.applied_index == 0
    await b.read_barrier()
    assert b.replica.snapshot_index == 10 and b.machine.applied_index == 12
    assert b.machine.digest() == a.machine.digest()


async def test_a_follower_behind_the_compacted_log_loads_the_snapshot() -> None:
    clock = FakeClock()
    db = DictDatabase(clock=clock.now)
    writer = SqlLog(
        SqlLogConfig(node_id="m1", api_url="http://m1", snapshot_every=4, keep_after_snapshot=0),
        StateMachine(),
        DictStore(db),
        pacer=clock,
    )
    await writer.start()
    await run_until(lambda: writer.is_leader, clock, 1)
    for n in range(6):
        task = asyncio.ensure_future(writer.propose(register(n)))
        await run_until(task.done, clock, 1)
    assert db.snapshot_row is not None and min(db.log) == 5  # 1..4 are gone
    heard: list[object] = []
    follower = Replica(
        StateMachine(),
        DictStore(db),
        run_inline,
        sinks=[heard.append],
        timings=RaftTimings(),
        read_batch=2,
    )
    await follower.catch_up()
    assert follower.applied == 6 and follower.snapshot_index == 4
    assert follower.machine.digest() == writer.machine.digest()
    assert type(heard[0][0]).__name__ == "StateRestored"  # type: ignore[index]
    await writer.close()


async def test_status_has_the_keys_of_every_log_and_names_the_store(cluster: Cluster) -> None:
    a, b = await two_masters(cluster)
    await cluster.propose(a, register(1))
    await b.read_barrier()
    # Each master reads the member rows as it renews or checks the lease.
    await cluster.until(lambda: all(set(log.members) == {"m1", "m2"} for log in (a, b)))
    memory = MemoryLog(StateMachine()).status()
    for log in (a, b):
        status = log.status()
        assert set(status) == set(memory) | {"store", "store_warning"}
        assert status["store"] == "dict://test" and status["store_warning"] is None
        assert status["leader_id"] == "m1" and status["term"] == 1
        assert [m["id"] for m in status["members"]] == ["m1", "m2"]
        assert status["applied_index"] == status["commit_index"] == 1
        assert log.raft_status.term == 1 and log.raft_status.applied == 1
        assert set(log.members) == {"m1", "m2"}
    assert a.status()["role"] == "leader" and b.status()["role"] == "follower"
    assert [m["link"] for m in a.status()["members"]] == ["self", "up"]


async def test_the_writer_writes_the_newest_format_every_live_master_reads(
    cluster: Cluster,
) -> None:
    a = await cluster.start("m1")
    await cluster.until(lambda: a.is_leader)
    assert a.log_format() == LOG_FORMAT
    DictStore(cluster.db).heartbeat("old", "http://old", 0, 2, "0.3.0")
    await cluster.until(lambda: "old" in a.members)
    assert a.log_format() == 2
    cluster.clock.advance(a.config.member_live_s + 1)  # "old" stopped refreshing its row
    await cluster.until(lambda: "old" not in a.members)
    assert a.log_format() == LOG_FORMAT


async def test_membership_changes_are_refused(cluster: Cluster) -> None:
    a = await cluster.start("m1")
    await cluster.until(lambda: a.is_leader)
    with pytest.raises(ConflictError, match="same --store"):
        await a.change_membership(ConfChangeType.ADD_VOTER, "m9", "h:1", "http://m9")
    with pytest.raises(ConflictError):
        await a.add_voter("m9", "h:1", "http://m9")
    with pytest.raises(ConflictError):
        await a.transfer_leadership("m2")


async def test_a_database_of_another_cluster_is_refused_at_start(cluster: Cluster) -> None:
    cluster.db.cluster_id = "elsewhere"
    log = SqlLog(
        SqlLogConfig(node_id="m1", api_url="http://m1"),
        StateMachine(),
        DictStore(cluster.db),
        pacer=cluster.clock,
    )
    with pytest.raises(Exception, match="elsewhere"):
        await log.start()
    assert not log.is_leader
    await log.close()


async def test_a_snapshot_that_does_not_restore_is_never_loaded() -> None:
    db = DictDatabase()
    db.snapshot_row = (5, b"\x81\xa6format\x09")  # an image of a format from the future
    db.log = {6: b"whatever"}
    replica = Replica(
        StateMachine(), DictStore(db), run_inline, sinks=[], timings=RaftTimings(), read_batch=10
    )
    before = replica.machine.digest()
    with pytest.raises(UnavailableError, match="does not restore: ValueError: image format 9"):
        await replica.catch_up()
    assert replica.applied == 0 and replica.machine.digest() == before


def test_a_lease_read_counts_as_live_only_for_what_the_database_said_was_left() -> None:
    tenure = Tenure(node_id="m2", api_url="http://m2", ttl_s=1.5, margin_s=0.3)
    assert tenure.saw(Lease("m1", "http://m1", 4, 1.0), at=100.0) is True
    assert tenure.leader_id(100.9) == "m1" and tenure.leader_url(100.9) == "http://m1"
    assert tenure.leader_id(101.0) is None and tenure.leader_url(101.0) is None
    lapsed = tenure.hint(101.0)  # none now; the last one known is still named
    assert lapsed == {"leader_id": "m1", "leader_url": "http://m1", "leader_known": False}
    assert tenure.saw(Lease("m1", "http://m1", 4, 1.0), at=102.0) is False  # not a new one
    assert tenure.epoch == 4 and not tenure.leads


def test_the_holder_steps_down_a_margin_before_the_lease_ends() -> None:
    tenure = Tenure(node_id="m1", api_url="http://m1", ttl_s=1.5, margin_s=0.3)
    tenure.hold(Lease("m1", "http://m1", 2, 1.5), started=10.0)
    assert tenure.leads and tenure.deadline == pytest.approx(11.2)
    assert tenure.leader_id(50.0) == "m1"  # its own: until it drops it
    assert tenure.drop() == Lease("m1", "http://m1", 2, 1.5) and tenure.drop() is None
    tenure.saw(Lease("m1", "http://m1", 2, 1.0), at=11.0)  # its own row, no longer held
    assert tenure.leader_id(11.1) is None
    assert tenure.hint(11.1)["leader_id"] is None  # never names itself to its own callers


def _noise(seed: int, chars: int) -> str:
    """Text that compresses little (the state image is compressed)."""
    return base64.b64encode(random.Random(seed).randbytes(chars)).decode()[:chars]


def _member(log: SqlLog, node_id: str) -> dict[str, Any]:
    return next(m for m in log.status()["members"] if m["id"] == node_id)


async def test_a_master_not_seen_for_a_while_shows_link_down_with_its_age(
    cluster: Cluster,
) -> None:
    a = await cluster.start("m1")
    await cluster.until(lambda: a.is_leader)
    DictStore(cluster.db).heartbeat("m9", "http://m9:6767", 0, LOG_FORMAT, "x")  # then killed
    await cluster.until(lambda: "m9" in a.members)
    assert _member(a, "m9")["link"] == "up"
    gone_s = a.config.member_live_s + 1
    cluster.clock.advance(gone_s)
    await cluster.until(lambda: _member(a, "m9")["link"] == "down")
    seen = _member(a, "m9")
    assert seen["last_contact_s"] >= gone_s and seen["connected"] is False
    # While the store does not answer this master, the rows it read last grow old too.
    DictStore(cluster.db).heartbeat("m9", "http://m9:6767", 0, LOG_FORMAT, "x")
    await cluster.until(lambda: _member(a, "m9")["link"] == "up")
    cluster.db.down = True
    cluster.clock.advance(gone_s)
    seen = _member(a, "m9")
    assert seen["link"] == "down" and seen["last_contact_s"] >= gone_s
    assert "m9" not in a.members
    cluster.db.down = False


async def test_a_command_over_the_store_row_limit_is_refused_alone(cluster: Cluster) -> None:
    a = await cluster.start("m1")
    await cluster.until(lambda: a.is_leader)
    cluster.db.row_limit = 4096
    big = replace(register(1), hostname="h" * 8192)
    small, other = register(2), register(3)
    results = await cluster.propose(a, small, big, other)  # one batch
    assert isinstance(results[1], PayloadTooLargeError)
    assert "max_allowed_packet" in str(results[1]) and results[1].status == 413
    assert results[0]["worker_id"] == "w2" and results[2]["worker_id"] == "w3"  # type: ignore[index]
    assert a.is_leader and a.machine.applied_index == max(cluster.db.log) == 2
    assert cluster.crashes == []


async def test_an_append_the_store_refuses_for_size_fails_the_batch_not_the_master(
    cluster: Cluster,
) -> None:
    a = await cluster.start("m1")
    await cluster.until(lambda: a.is_leader)
    cluster.db.row_limit = 4096  # the server's limit fell below what the master last read
    store = a._store
    assert isinstance(store, DictStore)
    store.entry_limit = lambda: None  # type: ignore[method-assign]
    big = replace(register(1), hostname="h" * 8192)
    [result] = await cluster.propose(a, big)
    assert isinstance(result, PayloadTooLargeError) and "max_allowed_packet" in str(result)
    [ok] = await cluster.propose(a, register(2))
    assert ok["worker_id"] == "w2" and a.is_leader  # type: ignore[index]
    assert cluster.crashes == []


async def test_a_snapshot_over_the_store_row_limit_is_logged_and_the_log_goes_on(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    a = await cluster.start("m1", snapshot_every=3, keep_after_snapshot=0)
    await cluster.until(lambda: a.is_leader)
    cluster.db.row_limit = 1000  # an entry fits; the image of the state does not
    for n in range(8):
        noisy = replace(register(n), hostname=_noise(n, 600))
        [result] = await cluster.propose(a, noisy)
        assert not isinstance(result, BaseException), result
    assert cluster.db.snapshot_row is None and min(cluster.db.log) == 1  # nothing compacted
    assert a.is_leader and a.machine.applied_index == 8 and cluster.crashes == []
    assert "taking a snapshot failed" in caplog.text and "max_allowed_packet" in caplog.text
    b = await cluster.start("m2")  # a new master replays the whole table
    assert b.machine.digest() == a.machine.digest()


async def test_the_start_says_the_store_its_schema_and_a_durability_warning(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="agentflow.cluster.sql.sqllog")
    cluster.db.durability = "fsync is off: a commit may be lost when the host crashes"
    log = await cluster.start("m1")
    said = caplog.text
    assert f"on the store dict://test: schema version {SCHEMA_VERSION}" in said
    assert "may lose commits: fsync is off" in said
    assert log.status()["store_warning"] == cluster.db.durability  # and in `cluster status`


async def test_a_store_that_does_not_answer_at_start_is_a_config_error(
    cluster: Cluster,
) -> None:
    cluster.db.down = True
    log = SqlLog(
        SqlLogConfig(node_id="m1", api_url="http://m1", store_url="dict://test"),
        StateMachine(),
        DictStore(cluster.db),
        pacer=cluster.clock,
    )
    with pytest.raises(ConfigError, match="cannot start on the store dict://test: migrate"):
        await log.start()
    await log.close()
