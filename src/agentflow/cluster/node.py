"""The Raft node driver: the core behind the command log seam.

Everything that reaches the core — peer messages, ticks, proposals, reads, membership
changes — is queued and fed to it by one loop, only between Readies; each Ready is then handled
in the order its type documents: send the leader's early messages (its appends go out while its
own write runs), persist (one SQLite transaction, one fsync for the whole batch), send the rest,
apply, serve reads, advance. A proposal resolves when its entry is applied with
the term it was proposed in; if another entry takes its index, it fails and the client's retry
(with its idempotency key) decides.

:class:`RaftLog` owns that control flow; the pieces it drives are handed what they need and
never reach back: ``recovery`` (image and log from disk at start), ``applier`` (one committed
entry), ``proposals`` (futures by index), ``reads`` (ReadIndex), ``membership`` (members,
admits, learner promotions) and ``snapshots`` (taking, installing, checking).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from random import Random
from typing import Any

from agentflow.cluster.applier import Applier
from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.image import Member
from agentflow.cluster.membership import Membership, Promotions
from agentflow.cluster.promotion import LearnerPromoter
from agentflow.cluster.proposals import Proposals
from agentflow.cluster.raftstore import RaftStore
from agentflow.cluster.reads import Reads
from agentflow.cluster.recovery import recover
from agentflow.cluster.seam import EventSink
from agentflow.cluster.snapshots import Snapshots, snapshot_usable
from agentflow.cluster.statestore import StateStore
from agentflow.cluster.status import cluster_status
from agentflow.cluster.transport import Transport
from agentflow.errors import (
    AgentFlowError,
    ConfigError,
    ConflictError,
    NotLeaderError,
    OverloadedError,
    UnavailableError,
    ValidationError,
)
from agentflow.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    MemoryStorage,
    Message,
    ProposalDroppedError,
    RaftNode,
    Ready,
    Snapshot,
    StateRole,
    Status,
)
from agentflow.state import Command, StateMachine, encode_command
from agentflow.state.events import StateRestored

__all__ = ["ClusterConfig", "RaftLog"]

log = logging.getLogger(__name__)


class RaftLog:
    """Implements :class:`agentflow.cluster.seam.CommandLog` over a Raft group."""

    def __init__(self, config: ClusterConfig, machine: StateMachine) -> None:
        self.config = config
        self._machine = machine
        self._raftstore = RaftStore(config.data_dir / "raft.db")
        self._statestore = StateStore(config.data_dir / "state.db")
        self._storage = MemoryStorage()
        self._snapshots = Snapshots(
            machine=machine,
            storage=self._storage,
            raftstore=self._raftstore,
            statestore=self._statestore,
            every=config.snapshot_every,
            bytes_max=config.snapshot_bytes,
            keep_after=config.keep_after_snapshot,
        )
        self._raft: RaftNode | None = None
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
        )
        self.applied = 0
        self.leader_id: str | None = None
        self.last_leader_id: str | None = None  # the last leader this node knew of
        self.role = StateRole.FOLLOWER
        self.last_heard: dict[str, float] = {}
        self._sinks: list[EventSink] = []
        self._leader_watchers: list[Callable[[bool], None]] = []
        self._inbox: list[Message] = []
        self._ticks = 0
        self._proposals: list[tuple[bytes, asyncio.Future[Any], Command]] = []
        self._actions: list[tuple[Callable[[RaftNode], Any], asyncio.Future[Any]]] = []
        self._waiting = Proposals()
        self._reads = Reads(config.node_id)
        self._campaign_alone = False
        self._snapshot_task: asyncio.Task[None] | None = None
        self._deferred: list[Entry] = []  # committed while a snapshot was being taken
        self._promotions = Promotions(
            LearnerPromoter(after_ticks=config.promote_after_ticks, lag_max=config.promote_lag_max)
        )
        self._wake = asyncio.Event()
        self._wake.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    # -- the seam ---------------------------------------------------------------------------

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

    def on_leadership(self, watcher: Callable[[bool], None]) -> None:
        self._leader_watchers.append(watcher)

    @property
    def leader_url(self) -> str | None:
        return self._url_of(self.leader_id)

    def _url_of(self, node_id: str | None) -> str | None:
        if node_id is None:
            return None
        if node_id == self.config.node_id:
            return self.config.api_url
        member = self.members.get(node_id)
        url = member.api_url if member else ""
        return url or self.transport.peer_info.get(node_id, {}).get("api_url") or None

    def _leader_hint(self) -> dict[str, Any]:
        """The leader now, or else the last one this master knew (for 503 problem bodies)."""
        known = self.leader_id or self.last_leader_id
        return {
            "leader_id": known,
            "leader_url": self._url_of(known),
            "leader_known": self.leader_id is not None,
        }

    def not_leader(self) -> NotLeaderError:
        if self.leader_id:
            why = f"; the leader is {self.leader_id}"
        elif self.last_leader_id:
            why = f"; no leader now (the last one known was {self.last_leader_id})"
        else:
            why = "; no leader is known"
        return NotLeaderError(
            f"master {self.config.node_id} is not the leader{why}", **self._leader_hint()
        )

    async def propose(self, command: Command) -> Any:
        if self._closed:
            raise UnavailableError("master is shutting down")
        if not self.is_leader:
            raise self.not_leader()
        if len(self._waiting) + len(self._proposals) >= self.config.max_pending:
            raise OverloadedError("too many commands waiting for consensus; retry shortly")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._proposals.append((encode_command(command), future, command))
        self._wake.set()
        try:
            result = await asyncio.wait_for(future, self.config.propose_timeout_s)
        except TimeoutError:
            raise UnavailableError(
                "the command was not committed in time (no quorum?); retry",
                **self._leader_hint(),
            ) from None
        if isinstance(result, AgentFlowError):
            raise result
        return result

    async def read_barrier(self) -> None:
        """ReadIndex: return once this node has applied everything committed before the call."""
        if self._closed:
            raise UnavailableError("master is shutting down")
        context, future = self._reads.start()
        self._run_on_core(lambda raft: raft.read_index(context), None)
        self._wake.set()
        try:
            await asyncio.wait_for(future, self.config.read_timeout_s)
        except TimeoutError:
            raise UnavailableError(
                f"cannot confirm the latest state: no quorum reachable from {self.config.node_id}",
                **self._leader_hint(),
            ) from None
        finally:
            self._reads.forget(context)

    # -- membership -------------------------------------------------------------------------

    async def change_membership(
        self, kind: ConfChangeType, node_id: str, raft_address: str = "", api_url: str = ""
    ) -> dict[str, Any]:
        if not self.is_leader:
            raise self.not_leader()
        if self.config.token is None and kind is not ConfChangeType.REMOVE_NODE:
            raise ConflictError(
                "this master has no peer port: it was started without a cluster token; restart"
                " it with --cluster-token (or --cluster-token-file) to add members"
            )
        context = json.dumps({"raft": raft_address, "api": api_url}).encode()
        change = ConfChange(type=kind, node_id=node_id, context=context)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def propose(raft: RaftNode) -> Any:
            if self._snapshot_task is not None:
                # Applying is held back while a snapshot is taken, and a conf change must not
                # run ahead of what is applied: wait in the queue until the snapshot is done.
                self._actions.append((propose, future))
                return
            index = raft.propose_conf_change(change)
            self._waiting.wait(index, raft.term, future)

        self._run_on_core(propose, future, keep=True)
        self._wake.set()
        try:
            result = await asyncio.wait_for(future, self.config.propose_timeout_s)
        except TimeoutError:
            raise UnavailableError("membership change was not committed in time") from None
        if isinstance(result, AgentFlowError):
            raise result
        return self.status()

    async def add_voter(self, node_id: str, raft_address: str, api_url: str) -> dict[str, Any]:
        """Make ``node_id`` a voter; if the leader is already promoting it, wait for that."""
        pending = self._promotions.pending(node_id)
        if pending is None:
            return await self.change_membership(
                ConfChangeType.ADD_VOTER, node_id, raft_address, api_url
            )
        try:
            await asyncio.wait_for(asyncio.shield(pending), self.config.propose_timeout_s)
        except TimeoutError:
            raise UnavailableError("membership change was not committed in time") from None
        return self.status()

    def _promote_learners(self, raft: RaftNode, ticks: int) -> None:
        """Propose ADD_VOTER for one learner that has kept up (see cluster.promotion)."""
        if self._snapshot_task is not None or self._promotions.in_flight:
            return  # a conf change never runs ahead of what is applied; one at a time
        self._promotions.propose(raft, ticks, self._membership, self._waiting)

    async def transfer_leadership(self, to: str) -> None:
        if not self.is_leader:
            raise self.not_leader()
        if to not in self._voters():
            raise ValidationError(f"{to} is not a voting member")
        self._run_on_core(lambda raft: raft.transfer_leadership(to), None)
        self._wake.set()
        deadline = time.monotonic() + self.config.tick_s * self.config.election_tick * 3
        while time.monotonic() < deadline:
            if self.leader_id == to:
                return
            await asyncio.sleep(self.config.tick_s / 2)
        raise UnavailableError(f"leadership did not move to {to} in time")

    def _voters(self) -> frozenset[str]:
        assert self._raft is not None
        return (
            self._raft.status.conf_state.voters
            if hasattr(self._raft.status, "conf_state")
            else frozenset(self.members)
        )

    def _run_on_core(
        self,
        action: Callable[[RaftNode], Any],
        future: asyncio.Future[Any] | None,
        *,
        keep: bool = False,
    ) -> None:
        """Queue ``action`` to run against the core between Readies."""
        holder = future or asyncio.get_running_loop().create_future()
        if keep:
            holder.add_done_callback(lambda f: None)
        self._actions.append((action, holder))

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        await self._raftstore.open()
        await self._statestore.open()
        image, n_entries = await recover(
            self.config,
            machine=self._machine,
            storage=self._storage,
            raftstore=self._raftstore,
            statestore=self._statestore,
        )
        self.members = dict(image.members)
        self.applied = image.index
        self._snapshots.index = image.index
        self._raft = RaftNode(
            Config(
                id=self.config.node_id,
                election_tick=self.config.election_tick,
                heartbeat_tick=self.config.heartbeat_tick,
                applied=image.index,
            ),
            self._storage,
            Random(),
        )
        self._campaign_alone = not self.config.join and set(self.members) == {self.config.node_id}
        others = sorted(set(self.members) - {self.config.node_id})
        if self.config.token is not None:
            await self.transport.start()
        elif others or self.config.join:
            named = f" (its data names {', '.join(others)})" if others else ""
            raise ConfigError(
                f"a cluster needs --cluster-token or --cluster-token-file{named}; a single"
                " master runs without one and opens no peer port"
            )
        self._sync_peers()
        log.info(
            "raft node %s: image at %d, %d log entries, members %s",
            self.config.node_id,
            image.index,
            n_entries,
            sorted(self.members),
        )
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._ticker(), name="raft-ticker"),
            loop.create_task(self._driver(), name="raft-driver"),
        ]
        for task in self._tasks:
            task.add_done_callback(_crash_if_failed)

    def _sync_peers(self) -> None:
        self._membership.sync_peers(self.transport)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._snapshot_task is not None:
            await asyncio.gather(self._snapshot_task, return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transport.close()
        await self._raftstore.close()
        await self._statestore.close()

    # -- inputs -----------------------------------------------------------------------------

    def admits(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is in the configuration (voters, learners, being added).

        A node that joins knows no configuration until the leader sends it one, so it takes
        any peer that proved the cluster token until then.
        """
        return self._membership.admits(peer_id, self._core_conf)

    def _core_conf(self) -> ConfState | None:
        return self._raft.status.conf_state if self._raft is not None else None

    def _on_message(self, msg: Message) -> None:
        if not self.admits(msg.from_):
            log.debug("dropped a message from %s: not in the configuration", msg.from_)
            return
        self.last_heard[msg.from_] = time.monotonic()
        if msg.snapshot is not None and not snapshot_usable(msg.snapshot, self._machine):
            return  # never handed to the core: the leader sends it again, nothing is lost
        self._inbox.append(msg)
        self._wake.set()

    def _on_unreachable(self, peer: str) -> None:
        self._run_on_core(lambda raft: raft.report_unreachable(peer), None)
        self._wake.set()

    def _on_snapshot_sent(self, peer: str, ok: bool) -> None:
        self._run_on_core(lambda raft: raft.report_snapshot(peer, ok), None)
        self._wake.set()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_s)
            self._ticks += 1
            self._wake.set()

    # -- the loop ---------------------------------------------------------------------------

    async def _driver(self) -> None:
        raft = self._raft
        assert raft is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._feed(raft)
            while raft.has_ready():
                ready = raft.ready()
                await self._handle_ready(raft, ready)
                raft.advance(ready)
                self._feed(raft)
                if self._campaign_alone and self.applied >= len(self.members):
                    self._campaign_alone = False  # a cluster of one need not wait to elect
                    raft.campaign()

    def _apply_in_order(self, raft: RaftNode) -> None:
        """Apply every committed entry not yet applied, oldest first, unless a snapshot is
        being taken (then they wait, in order, for it to finish)."""
        if self._deferred and self._snapshot_task is None:
            entries, self._deferred = tuple(self._deferred), []
            self._apply(raft, entries)
            self._reads.release(self.applied)

    def _feed(self, raft: RaftNode) -> None:
        self._apply_in_order(raft)
        inbox, self._inbox = self._inbox, []
        for msg in inbox:
            raft.step(msg)
        ticks, self._ticks = self._ticks, 0
        for _ in range(ticks):
            raft.tick()
        if ticks and self.is_leader:
            self._promote_learners(raft, ticks)
        actions, self._actions = self._actions, []
        for action, future in actions:
            try:
                action(raft)
            except (ProposalDroppedError, ValueError) as exc:
                if not future.done():
                    future.set_result(_refused(exc, self))
        proposals, self._proposals = self._proposals, []
        for data, future, command in proposals:
            if future.done():
                continue
            try:
                index = raft.propose(data)
            except ProposalDroppedError:
                future.set_exception(self.not_leader())
                continue
            self._waiting.wait(index, raft.term, future)
            self._applier.own.proposed(index, data, command)

    async def _handle_ready(self, raft: RaftNode, ready: Ready) -> None:
        # The leader's appends go out first: the followers write while we do (thesis §10.2.1);
        # the core counts our own copy only once advance() says it is durable.
        for msg in ready.early_messages:
            self.transport.send(msg)
        if ready.soft_state is not None:
            self._leadership(ready.soft_state.leader_id, ready.soft_state.role)
        if ready.snapshot is not None and ready.snapshot.metadata.index > self.applied:
            if self._snapshot_task is not None:  # never restore under a thread reading it
                await asyncio.gather(self._snapshot_task, return_exceptions=True)
            await self._install_snapshot(ready.snapshot)
        await self._raftstore.save(ready.hard_state, ready.entries)
        if ready.hard_state is not None:
            self._storage.set_hard_state(ready.hard_state)
        if ready.entries:
            self._storage.append(ready.entries)
            self._membership.note_adding(ready.entries)
        for msg in ready.messages:
            self.transport.send(msg)
        self._deferred.extend(ready.committed_entries)
        self._apply_in_order(raft)
        self._reads.park(ready.read_states)
        self._reads.release(self.applied)
        if self._snapshot_task is None and self._snapshots.due(self.applied):
            self._snapshots.bytes_since = 0
            self._snapshot_task = asyncio.get_running_loop().create_task(
                self._take_snapshot(raft), name="raft-snapshot"
            )

    def _leadership(self, leader_id: str | None, role: StateRole) -> None:
        was_leader = self.is_leader
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

    def _apply(self, raft: RaftNode, entries: tuple[Entry, ...]) -> None:
        for entry in entries:
            result = self._applier.apply(raft, entry)
            self.applied = entry.index
            self._snapshots.bytes_since += len(entry.data)
            self._waiting.applied(entry, result)
        events = self._applier.drain_events()
        if events:
            for sink in self._sinks:
                sink(events)

    async def _install_snapshot(self, snapshot: Snapshot) -> None:
        image = await self._snapshots.install(snapshot)
        self.members = dict(image.members)
        self.applied = image.index
        for sink in self._sinks:  # what was skipped has no events: tell whoever keeps them
            sink([StateRestored(index=image.index)])
        self._deferred = [e for e in self._deferred if e.index > image.index]
        self._sync_peers()
        self._waiting.superseded(image.index)

    async def _take_snapshot(self, raft: RaftNode) -> None:
        """Image the state at the applied index on a thread, then compact the log behind it.

        The driver keeps persisting, sending and heartbeating meanwhile; it only holds back
        applying committed entries (nothing else changes the state machine), so the image is
        consistent and no election times out while a large state is serialised.
        """
        try:
            await self._snapshots.take(raft, self.applied, dict(self.members))
        except Exception:
            log.exception("taking a snapshot failed; the log is kept and it is tried again later")
            self._snapshots.index = self.applied
        finally:
            self._snapshot_task = None
            self._wake.set()

    # -- observation ------------------------------------------------------------------------

    @property
    def raft_status(self) -> Status:
        assert self._raft is not None
        return self._raft.status

    @property
    def last_index(self) -> int:
        return self._storage.last_index()

    @property
    def snapshot_index(self) -> int:
        return self._snapshots.index

    def status(self) -> dict[str, Any]:
        return cluster_status(self)


def _refused(exc: Exception, node: RaftLog) -> AgentFlowError:
    if isinstance(exc, ProposalDroppedError):
        return node.not_leader() if not node.is_leader else ConflictError(str(exc))
    return ValidationError(str(exc))


def _crash_if_failed(task: asyncio.Task[None]) -> None:
    """A dead driver leaves a master that answers but never commits: crash instead, loudly,
    so that the other masters take over and a supervisor restarts this one."""
    if task.cancelled() or task.exception() is None:
        return
    log.critical("%s failed; exiting", task.get_name(), exc_info=task.exception())
    logging.shutdown()
    os._exit(70)
