"""The readiness probe: ``GET /health/ready`` answers 200 only when this master can serve.

Liveness (``/health``) says the process answers. Readiness says more, for a load balancer or
Kubernetes deciding where to send clients: this member knows a leader, and it has applied
everything the leader had committed when the probe came in. The second part is one ReadIndex
round (:meth:`read_barrier`): the leader confirms its leadership with a quorum and names its
commit index, and the barrier returns once this member has applied up to it. A member that
lags (restored from an old disk, a learner still receiving the log), or cut off from the
quorum, does not get there within :data:`READY_WAIT_S` and answers 503 with the reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

from agentflow.api.service import MasterService
from agentflow.errors import UnavailableError

__all__ = ["READY_WAIT_S", "readiness"]

# How long a probe waits for this member to apply the leader's commit index. Under a probe's
# own timeout (Kubernetes: 1 s by default, raised to 3 s in deploy/kubernetes/).
READY_WAIT_S = 2.0


async def readiness(service: MasterService) -> dict[str, Any]:
    """This member's readiness, or :class:`UnavailableError` (503) saying why it is not ready."""
    log = service.log
    node_id = service.config.node_id
    if log.leader_id is None:
        raise UnavailableError(f"not ready: {node_id} knows no leader")
    try:
        await asyncio.wait_for(log.read_barrier(), READY_WAIT_S)
    except (TimeoutError, UnavailableError) as exc:
        applied = service.machine.applied_index
        why = str(exc) or f"waited {READY_WAIT_S:g}s"
        raise UnavailableError(
            f"not ready: {node_id} has not caught up with the leader's commit index "
            f"(applied {applied}): {why}"
        ) from None
    return {
        "status": "ready",
        "node_id": node_id,
        "leader_id": log.leader_id,
        "applied_index": service.machine.applied_index,
    }
