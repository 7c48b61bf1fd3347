"""Membership changes and leadership transfer, asked of the leader through the seam.

Each is queued to run against the core between Readies (see
:class:`agentflow.cluster.driver.ReadyDriver`); a conf change never runs ahead of what is
applied, so while a snapshot is taken (applying held back) it waits in the queue. Learners
that kept up are promoted by the leader itself, one at a time (:mod:`agentflow.cluster.promotion`).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Protocol

from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.driver import ReadyDriver
from agentflow.cluster.membership import Membership, Promotions
from agentflow.errors import (
    AgentFlowError,
    ConflictError,
    NotLeaderError,
    UnavailableError,
    ValidationError,
)
from agentflow.raft import ConfChange, ConfChangeType, RaftNode

__all__ = ["MemberChanges"]


class _Node(Protocol):
    @property
    def is_leader(self) -> bool: ...

    @property
    def leader_id(self) -> str | None: ...

    def not_leader(self) -> NotLeaderError: ...

    def status(self) -> dict[str, Any]: ...

    def wake(self) -> None: ...


class MemberChanges:
    def __init__(
        self,
        node: _Node,
        *,
        config: ClusterConfig,
        driver: ReadyDriver,
        membership: Membership,
        promotions: Promotions,
    ) -> None:
        self._node = node
        self._config = config
        self._driver = driver
        self._membership = membership
        self._promotions = promotions

    async def change(
        self, kind: ConfChangeType, node_id: str, raft_address: str = "", api_url: str = ""
    ) -> dict[str, Any]:
        node = self._node
        if not node.is_leader:
            raise node.not_leader()
        if self._config.token is None and kind is not ConfChangeType.REMOVE_NODE:
            raise ConflictError(
                "this master has no peer port: it was started without a cluster token; restart"
                " it with --cluster-token (or --cluster-token-file) to add members"
            )
        context = json.dumps({"raft": raft_address, "api": api_url}).encode()
        change = ConfChange(type=kind, node_id=node_id, context=context)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.add_done_callback(lambda f: None)
        driver = self._driver

        def propose(raft: RaftNode) -> Any:
            if driver.holding:
                # Applying is held back while a snapshot is taken, and a conf change must not
                # run ahead of what is applied: wait in the queue until the snapshot is done.
                driver.act(propose, future)
                return
            index = raft.propose_conf_change(change)
            driver.waiting.wait(index, raft.term, future)

        driver.act(propose, future)
        node.wake()
        try:
            result = await asyncio.wait_for(future, self._config.propose_timeout_s)
        except TimeoutError:
            raise UnavailableError("membership change was not committed in time") from None
        if isinstance(result, AgentFlowError):
            raise result
        return node.status()

    async def add_voter(self, node_id: str, raft_address: str, api_url: str) -> dict[str, Any]:
        """Make ``node_id`` a voter; if the leader is already promoting it, wait for that."""
        pending = self._promotions.pending(node_id)
        if pending is None:
            return await self.change(ConfChangeType.ADD_VOTER, node_id, raft_address, api_url)
        try:
            await asyncio.wait_for(asyncio.shield(pending), self._config.propose_timeout_s)
        except TimeoutError:
            raise UnavailableError("membership change was not committed in time") from None
        return self._node.status()

    def promote_learners(self, raft: RaftNode, ticks: int) -> None:
        """Propose ADD_VOTER for one learner that has kept up (see cluster.promotion)."""
        if self._driver.holding or self._promotions.in_flight:
            return  # a conf change never runs ahead of what is applied; one at a time
        self._promotions.propose(raft, ticks, self._membership, self._driver.waiting)

    async def transfer_leadership(self, to: str) -> None:
        node = self._node
        if not node.is_leader:
            raise node.not_leader()
        if to not in self._driver.raft.status.conf_state.voters:
            raise ValidationError(f"{to} is not a voting member")
        holder: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._driver.act(lambda raft: raft.transfer_leadership(to), holder)
        node.wake()
        config = self._config
        deadline = time.monotonic() + config.tick_s * config.election_tick * 3
        while time.monotonic() < deadline:
            if node.leader_id == to:
                return
            await asyncio.sleep(config.tick_s / 2)
        raise UnavailableError(f"leadership did not move to {to} in time")
