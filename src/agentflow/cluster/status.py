"""What ``GET /api/v1/cluster`` shows: this master's view of the leader, term and members."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from agentflow.cluster.versions import format_status

if TYPE_CHECKING:
    from agentflow.cluster.node import RaftLog

__all__ = ["LINK_STATES", "cluster_status"]

# A member's link as this master knows it. "self": this master. "up": heard from within the
# election timeout. "down": not connected, or silent for longer than the election timeout
# where it should not be (the leader heartbeats every member and each answers; a follower
# hears the leader). "unknown": a follower rarely talks to other followers, so it cannot tell;
# the leader's answer can.
LINK_STATES = ("self", "up", "down", "unknown")


def cluster_status(node: RaftLog) -> dict[str, Any]:
    st = node.raft_status
    now = time.monotonic()
    last_index = node.last_index
    link_timeout_s = node.config.tick_s * node.config.election_tick
    members = []
    for nid, member in sorted(node.members.items()):
        pr = st.progress.get(nid)
        if nid == node.leader_id:
            role = "leader"
        else:
            role = "voter" if nid in st.conf_state.voters else "learner"
        heard = node.last_heard.get(nid)
        members.append(
            {
                "id": nid,
                "api_url": member.api_url or node.transport.peer_info.get(nid, {}).get("api_url"),
                "raft_address": member.raft_address,
                "role": role,
                "match_index": pr.match if pr is not None else None,
                "lag": (last_index - pr.match) if pr is not None else None,
                "last_contact_s": None if heard is None else round(now - heard, 3),
                "connected": nid == node.config.node_id or node.transport.connected(nid),
                "link": _link(node, nid, None if heard is None else now - heard, link_timeout_s),
            }
        )
    return {
        "node_id": node.config.node_id,
        "cluster_id": node.config.cluster_id,
        "leader_id": node.leader_id,
        "leader_url": node.leader_url,
        "role": node.role.value.lower(),
        "term": st.term,
        "commit_index": st.commit,
        "applied_index": node.applied,
        "last_index": last_index,
        "snapshot_index": node.snapshot_index,
        "members": members,
        "link_timeout_s": round(link_timeout_s, 3),
        "rejected_entries": node.machine.rejected.view(),
        "formats": format_status(node.config.node_id, node.members, node.transport.peer_info),
        # Leaders this master learnt of, newest first: the last elections as it saw them.
        "recent_leaders": [dict(seen) for seen in reversed(node.timings.leaders)],
    }


def _link(node: RaftLog, nid: str, silent_s: float | None, timeout_s: float) -> str:
    """One of :data:`LINK_STATES` for ``nid``, silent for ``silent_s`` (None: never heard)."""
    if nid == node.config.node_id:
        return "self"
    if not node.transport.connected(nid):
        return "down"
    recent = silent_s is not None and silent_s <= timeout_s
    if recent:
        return "up"
    return "down" if node.is_leader or nid == node.leader_id else "unknown"
