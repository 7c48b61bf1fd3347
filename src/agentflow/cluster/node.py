"""The Raft node: the core behind the command log seam, in a thin asyncio shell.

The control flow — feeding inputs only between Readies, handling each Ready in order, apply at
term, parked reads, applying held back while a snapshot is taken — is the synchronous, I/O-free
:class:`agentflow.cluster.driver.ReadyDriver`, which the simulator runs too. :class:`RaftLog`
queues inputs and wakes one loop; between :meth:`ReadyDriver.begin` and
:meth:`ReadyDriver.finish` it makes each Ready's write durable (one SQLite transaction, one
fsync for the batch, on the store's thread). The pieces it holds never reach back:
``recovery``, ``applier``, ``reads``, ``membership``/``changes``, ``snapshots``/``snapshotting``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from agentflow.cluster.applier import Applier
from agentflow.cluster.boot import check_peers, make_core
from agentflow.cluster.changes import MemberChanges
from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.driver import MemoryLogStore, ReadyDriver
from agentflow.cluster.image import Image, Member
from agentflow.cluster.leaderhint import leader_hint, not_leader, refused, url_of
from agentflow.cluster.membership import Membership, Promotions
from agentflow.cluster.promotion import LearnerPromoter
from agentflow.cluster.proposals import committed
from agentflow.cluster.raftstore import RaftStore
from agentflow.cluster.reads import Reads
from agentflow.cluster.recovery import recover
from agentflow.cluster.restore import prepare_identity
from agentflow.cluster.seam import EventSink
from agentflow.cluster.snapshots import Snapshots, snapshot_usable
from agentflow.cluster.snapshotting import SnapshotTaker
from agentflow.cluster.statestore import StateStore
from agentflow.cluster.status import cluster_status
from agentflow.cluster.timings import RaftTimings
from agentflow.cluster.transport import Transport
from agentflow.cluster.versions import cluster_format
from agentflow.errors import (
    AgentFlowError,
    NotLeaderError,
    OverloadedError,
    UnavailableError,
)
from agentflow.raft import (
    ConfChangeType,
    Entry,
    MemoryStorage,
    Message,
    RaftNode,
    Ready,
    Snapshot,
    StateRole,
    Status,
)
from agentflow.state import Command, StateMachine, encode_command
from agentflow.state.events import Event, StateRestored

__all__ = ["ClusterConfig", "RaftLog"]

log = logging.getLogger(__name__)


class RaftLog:
    """Implements :class:`agentflow.cluster.seam.CommandLog` over a Raft group."""

    def __init__(self, config: ClusterConfig, machine: StateMachine) -> None:
        self.config = config
        self._machine = machine
        self.timings = RaftTimings()  # read by /metrics
        self._raftstore = RaftStore(config.data_dir / "raft.db", fsync=self.timings.fsync)
        self._statestore = StateStore(config.data_dir / "state.db")
        self._storage = MemoryStorage()
        stores = (self._storage, self._raftstore, self._statestore)
        self._snapshots = Snapshots.for_config(config, machine, *stores)
        self.transport = Transport(
            node_id=config.node_id,
            cluster_id=config.cluster_id,
            token=config.token or "",
            tls=config.tls,
            host=config.raft_host,
            port=config.raft_port,
            on_message=self._on_message,
            on_unreachable=self._on_unreachable,
            on_snapshot_sent=self._on_snapshot_sent,
            advertise={"api_url": config.api_url},
            admit=self.admits,
        )
        self._membership = Membership(config.node_id, join=config.join)
        self._applier = Applier(
            machine=machine,
            membership=self._membership,
            storage=self._storage,
            transport=self.transport,
            on_applied=self._on_applied,
        )
        self.leader_id: str | None = None
        self.last_leader_id: str | None = None  # the last leader this node knew of
        self.role = StateRole.FOLLOWER
        self.last_heard: dict[str, float] = {}
        self._sinks: list[EventSink] = []
        self._leader_watchers: list[Callable[[bool], None]] = []
        self._reads = Reads(config.node_id)
        self._driver = ReadyDriver(
            outbox=self.transport,
            store=MemoryLogStore(self._storage, on_entries=self._membership.note_adding),
            applier=self._applier,
            reads=self._reads,
            shell=self,
        )
        self._taker = SnapshotTaker(
            self._snapshots,
            self._driver,
            members=lambda: self.members,
            wake=self.wake,
            timings=self.timings,
        )
        self._promotions = Promotions(
            LearnerPromoter(after_ticks=config.promote_after_ticks, lag_max=config.promote_lag_max)
        )
        self._changes = MemberChanges(
            self,
            config=config,
            driver=self._driver,
            membership=self._membership,
            promotions=self._promotions,
        )
        self._wake = asyncio.Event()
        self._wake.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- the seam ---------------------------------------------------------------------------

    @property
    def applied(self) -> int:  # the index of the latest entry applied to the machine
        return self._driver.applied

    @property
    def _inbox(self) -> list[Message]:
        return self._driver.inbox

    @property
    def machine(self) -> StateMachine:
        return self._machine

    @property
    def members(self) -> dict[str, Member]:
        """The members of the configuration this node knows, by node id."""
        return self._membership.members

    @members.setter
    def members(self, members: dict[str, Member]) -> None:
        self._membership.members = members

    @property
    def is_leader(self) -> bool:
        return self.role is StateRole.LEADER

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    def log_format(self) -> int:
        return cluster_format(self.config.node_id, self.members, self.transport.peer_info)

    def on_leadership(self, watcher: Callable[[bool], None]) -> None:
        self._leader_watchers.append(watcher)

    @property
    def leader_url(self) -> str | None:
        return url_of(self, self.leader_id)

    def not_leader(self) -> NotLeaderError:
        return not_leader(self)

    async def propose(self, command: Command) -> Any:
        if self._closed:
            raise UnavailableError("master is shutting down")
        if not self.is_leader:
            raise self.not_leader()
        if self._driver.queued >= self.config.max_pending:
            raise OverloadedError("too many commands waiting for consensus; retry shortly")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._driver.propose(encode_command(command, self.log_format()), future, command)
        self._wake.set()
        return await committed(
            future,
            timeout_s=self.config.propose_timeout_s,
            observe=self.timings.commit,
            late="the command was not committed in time (no quorum?); retry",
            hint=leader_hint(self),
        )

    async def read_barrier(self) -> None:
        """ReadIndex: return once this node has applied everything committed before the call."""
        if self._closed:
            raise UnavailableError("master is shutting down")
        context, future = self._reads.start()
        self._run_on_core(lambda raft: raft.read_index(context))
        try:
            await asyncio.wait_for(future, self.config.read_timeout_s)
        except TimeoutError:
            raise UnavailableError(
                f"cannot confirm the latest state: no quorum reachable from {self.config.node_id}",
                **leader_hint(self),
            ) from None
        finally:
            self._reads.forget(context)

    # -- membership (agentflow.cluster.changes) ----------------------------------------------

    async def change_membership(
        self, kind: ConfChangeType, node_id: str, raft_address: str = "", api_url: str = ""
    ) -> dict[str, Any]:
        return await self._changes.change(kind, node_id, raft_address, api_url)

    async def add_voter(self, node_id: str, raft_address: str, api_url: str) -> dict[str, Any]:
        """Make ``node_id`` a voter; if the leader is already promoting it, wait for that."""
        return await self._changes.add_voter(node_id, raft_address, api_url)

    async def transfer_leadership(self, to: str) -> None:
        await self._changes.transfer_leadership(to)

    def _run_on_core(self, action: Callable[[RaftNode], Any]) -> None:
        """Queue ``action`` to run against the core between Readies, and wake the loop."""
        self._driver.act(action, asyncio.get_running_loop().create_future())
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def backup(self) -> tuple[Image, str]:  # the image at the applied index, its digest
        return await self._taker.capture(self._driver.raft, dict(self.members))

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        stores = (self._storage, self._raftstore, self._statestore)
        await self._raftstore.open()
        await self._statestore.open()
        await prepare_identity(self.config, self._machine, self.transport, *stores[1:])
        image, n_entries = await recover(self.config, self._machine, *stores)
        self.members = dict(image.members)
        self._snapshots.index = image.index
        self._driver.start(make_core(self.config, image, self._storage), applied=image.index)
        if not self.config.join and set(self.members) == {self.config.node_id}:
            self._driver.campaign_at = len(self.members)  # a cluster of one: once replayed
        check_peers(self.config, self.members)
        if self.config.token is not None:
            await self.transport.start()
        self._membership.sync_peers(self.transport)
        info = (self.config.node_id, image.index, n_entries, sorted(self.members))
        log.info("raft node %s: image at %d, %d entries after it, members %s", *info)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._ticker(), name="raft-ticker"),
            loop.create_task(self._drive(), name="raft-driver"),
        ]
        for task in self._tasks:
            task.add_done_callback(_crash_if_failed)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._taker.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.close()
        await self._raftstore.close()
        await self._statestore.close()

    # -- inputs -----------------------------------------------------------------------------

    def admits(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is in the configuration (voters, learners, being added); a
        joining node takes any peer that proved the token until it learns one."""
        return self._membership.admits(peer_id, self._driver.conf_state)

    def _on_message(self, msg: Message) -> None:
        if not self.admits(msg.from_):
            log.debug("dropped a message from %s: not in the configuration", msg.from_)
            return
        self.last_heard[msg.from_] = time.monotonic()
        if msg.snapshot is not None and not snapshot_usable(msg.snapshot, self._machine):
            return  # never handed to the core: the leader sends it again, nothing is lost
        self._driver.step(msg)
        self._wake.set()

    def _on_unreachable(self, peer: str) -> None:
        self._run_on_core(lambda raft: raft.report_unreachable(peer))

    def _on_snapshot_sent(self, peer: str, ok: bool) -> None:
        self._run_on_core(lambda raft: raft.report_snapshot(peer, ok))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            self._driver.tick()
            self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    async def _drive(self) -> None:
        driver = self._driver
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (ready := driver.next_ready()) is not None:
                await self._handle_ready(ready)

    async def _handle_ready(self, ready: Ready) -> None:
        """The driver handles ``ready``; the shell makes its write durable in the middle."""
        driver = self._driver
        write = driver.begin(ready)
        if write.snapshot is not None:
            await self._install_snapshot(write.snapshot)
        await self._raftstore.save(write.hard_state, write.entries, sync=write.sync_commit)
        started = time.perf_counter()
        driver.finish(ready)  # sends, then applies what committed
        if ready.committed_entries:
            self.timings.apply.observe(time.perf_counter() - started)
        self._taker.maybe_take()

    # -- what the driver tells this shell (agentflow.cluster.driver.DriverShell) -------------

    def ticked(self, raft: RaftNode, ticks: int) -> None:
        if self.is_leader:
            self._changes.promote_learners(raft, ticks)

    def refused(self, exc: Exception) -> AgentFlowError:
        return refused(exc, self)

    def leadership(self, leader_id: str | None, role: StateRole) -> None:
        was_leader = self.is_leader
        if role is StateRole.CANDIDATE and self.role is not StateRole.CANDIDATE:
            self.timings.elections += 1
        if leader_id is not None:
            term = self._driver.raft.status.term
            self.timings.note_leader(leader_id, term, changed=leader_id != self.last_leader_id)
        self.leader_id, self.role = leader_id, role
        if leader_id is not None:
            self.last_leader_id = leader_id
        if was_leader != self.is_leader:
            self._promotions.reset()  # their entries resolve (or fail) through _waiting
            log.info(
                "node %s is %s (leader %s)",
                self.config.node_id,
                "the leader" if self.is_leader else role.value.lower(),
                leader_id,
            )
            for watcher in self._leader_watchers:
                watcher(self.is_leader)

    def _on_applied(self, entries: tuple[Entry, ...], events: list[Event]) -> None:
        self._snapshots.bytes_since += sum(len(entry.data) for entry in entries)
        if events:
            for sink in self._sinks:
                sink(events)

    async def _install_snapshot(self, snapshot: Snapshot) -> None:
        image = await self._taker.install(snapshot)
        self.members = dict(image.members)
        for sink in self._sinks:  # what was skipped has no events: tell whoever keeps them
            sink([StateRestored(index=image.index)])
        self._membership.sync_peers(self.transport)

    # -- observation ------------------------------------------------------------------------

    @property
    def raft_status(self) -> Status:
        return self._driver.raft.status

    @property
    def last_index(self) -> int:
        return self._storage.last_index()

    @property
    def snapshot_index(self) -> int:
        return self._snapshots.index

    def status(self) -> dict[str, Any]:
        return cluster_status(self)


def _crash_if_failed(task: asyncio.Task[None]) -> None:
    """A dead driver leaves a master that answers but never commits: crash instead, loudly,
    so that the other masters take over and a supervisor restarts this one."""
    if task.cancelled() or task.exception() is None:
        return
    log.critical("%s failed; exiting", task.get_name(), exc_info=task.exception())
    logging.shutdown()
    os._exit(70)
