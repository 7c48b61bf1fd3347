"""Who leads, as this master knows it: for 503 problem bodies and redirects to the leader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agentflow.errors import AgentFlowError, ConflictError, NotLeaderError, ValidationError
from agentflow.raft import ProposalDroppedError

if TYPE_CHECKING:
    from agentflow.cluster.node import RaftLog

__all__ = ["leader_hint", "not_leader", "refused", "url_of"]


def url_of(node: RaftLog, node_id: str | None) -> str | None:
    """The API URL of ``node_id``, if this master knows it."""
    if node_id is None:
        return None
    if node_id == node.config.node_id:
        return node.config.api_url
    member = node.members.get(node_id)
    url = member.api_url if member else ""
    return url or node.transport.peer_info.get(node_id, {}).get("api_url") or None


def leader_hint(node: RaftLog) -> dict[str, Any]:
    """The leader now, or else the last one this master knew (for 503 problem bodies)."""
    known = node.leader_id or node.last_leader_id
    return {
        "leader_id": known,
        "leader_url": url_of(node, known),
        "leader_known": node.leader_id is not None,
    }


def not_leader(node: RaftLog) -> NotLeaderError:
    if node.leader_id:
        why = f"; the leader is {node.leader_id}"
    elif node.last_leader_id:
        why = f"; no leader now (the last one known was {node.last_leader_id})"
    else:
        why = "; no leader is known"
    return NotLeaderError(
        f"master {node.config.node_id} is not the leader{why}", **leader_hint(node)
    )


def refused(exc: Exception, node: RaftLog) -> AgentFlowError:
    """What a caller gets when the core refused its action."""
    if isinstance(exc, ProposalDroppedError):
        return not_leader(node) if not node.is_leader else ConflictError(str(exc))
    return ValidationError(str(exc))
