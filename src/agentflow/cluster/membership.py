"""Who is in the cluster: the members this node knows, those being added, and promotions.

:class:`Membership` holds the member table (addresses from the committed configuration) and
the members whose ADD changes are appended but not yet applied, so that their links are
admitted before the change applies. :class:`Promotions` drives the leader's learner
promotions, one ADD_VOTER at a time, by the rule of :mod:`agentflow.cluster.promotion`.
The driver (:class:`agentflow.cluster.node.RaftLog`) calls both only between Readies.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from agentflow.cluster.image import Member, member_context
from agentflow.cluster.promotion import LearnerPromoter
from agentflow.cluster.proposals import Proposals
from agentflow.cluster.transport import PeerAddress, Transport
from agentflow.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    ProposalDroppedError,
    RaftNode,
)

__all__ = ["Membership", "Promotions"]

log = logging.getLogger(__name__)


class Membership:
    """The members of the configuration as this node knows them, by node id."""

    def __init__(self, node_id: str, *, join: bool) -> None:
        self.node_id = node_id
        self.join = join  # started to join a cluster: knows no configuration until sent one
        self.members: dict[str, Member] = {}
        # Members in ADD conf changes appended but not yet applied, each with the index of its
        # latest such change: applying an earlier change of the same member (a REMOVE that a
        # re-ADD follows) must not forget the ADD still to apply.
        self._adding: dict[str, int] = {}

    def admits(self, peer_id: str, core_conf: Callable[[], ConfState | None]) -> bool:
        """Whether ``peer_id`` is in the configuration (voters, learners, being added).

        ``core_conf`` reads the core's configuration (None before the core exists), only when
        the members do not decide. A node that joins knows no configuration until the leader
        sends it one, so it takes any peer that proved the cluster token until then.
        """
        if peer_id == self.node_id:
            return False
        if peer_id in self.members or peer_id in self._adding:
            return True
        conf = core_conf()
        return self.join and (conf is None or not (conf.voters or conf.learners))

    def note_adding(self, entries: tuple[Entry, ...]) -> None:
        """Remember members being added, so their links are admitted before the change applies."""
        for entry in entries:
            if entry.type is not EntryType.CONF_CHANGE:
                continue
            try:
                change = ConfChange.decode(entry.data)
            except (ValueError, KeyError, TypeError):
                continue  # applying it decides what it means; admitting is only a hint
            if change.type is not ConfChangeType.REMOVE_NODE:
                latest = self._adding.get(change.node_id, entry.index)
                self._adding[change.node_id] = max(latest, entry.index)

    def apply(self, change: ConfChange, index: int) -> None:
        """Record the conf change applied at ``index``: the member goes, or comes with its
        addresses. An ADD of the same member appended after ``index`` is still admitted."""
        if self._adding.get(change.node_id, index) <= index:
            self._adding.pop(change.node_id, None)
        if change.type is ConfChangeType.REMOVE_NODE:
            self.members.pop(change.node_id, None)
        else:
            context = member_context(change.context)
            old = self.members.get(change.node_id)
            self.members[change.node_id] = Member(
                node_id=change.node_id,
                raft_address=context.get("raft") or (old.raft_address if old else ""),
                api_url=context.get("api") or (old.api_url if old else ""),
            )

    def context_of(self, node_id: str) -> bytes:
        """The conf change context that keeps ``node_id``'s known addresses."""
        member = self.members.get(node_id)
        return json.dumps(
            {
                "raft": member.raft_address if member else "",
                "api": member.api_url if member else "",
            }
        ).encode()

    def sync_peers(self, transport: Transport) -> None:
        """Dial every other member at its address; drop links to those no longer members."""
        for nid, member in self.members.items():
            if nid != self.node_id and member.raft_address:
                transport.set_peer(nid, PeerAddress.parse(member.raft_address))
        for nid in list(transport.peers()):
            if nid not in self.members:
                transport.remove_peer(nid)


class Promotions:
    """The leader's learner promotions in flight: learner -> the future of its ADD_VOTER."""

    def __init__(self, promoter: LearnerPromoter) -> None:
        self._promoter = promoter
        self._pending: dict[str, asyncio.Future[Any]] = {}

    @property
    def in_flight(self) -> bool:
        return bool(self._pending)

    def pending(self, node_id: str) -> asyncio.Future[Any] | None:
        """The future of the ADD_VOTER that promotes ``node_id``, if one is in flight."""
        return self._pending.get(node_id)

    def reset(self) -> None:
        """Leadership changed hands: forget streaks and promotions in flight (their entries
        resolve, or fail, through the proposals)."""
        self._promoter.reset()
        self._pending.clear()

    def propose(
        self, raft: RaftNode, ticks: int, membership: Membership, proposals: Proposals
    ) -> None:
        """Propose ADD_VOTER for one learner that has kept up (see cluster.promotion)."""
        status = raft.status
        if not status.conf_state.learners:
            return
        for node_id in self._promoter.due(status, ticks):
            context = membership.context_of(node_id)
            change = ConfChange(type=ConfChangeType.ADD_VOTER, node_id=node_id, context=context)
            try:
                index = raft.propose_conf_change(change)
            except ProposalDroppedError:
                return  # another change is pending: the next tick tries again
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            proposals.wait(index, raft.term, future)
            self._pending[node_id] = future
            future.add_done_callback(self._done(node_id))
            log.info("promoting learner %s to voter: it has caught up", node_id)
            return

    def _done(self, node_id: str) -> Callable[[asyncio.Future[Any]], None]:
        def done(future: asyncio.Future[Any]) -> None:
            if self._pending.get(node_id) is future:
                del self._pending[node_id]

        return done
