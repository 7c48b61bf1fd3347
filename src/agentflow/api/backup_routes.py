"""``GET /api/v1/cluster/backup``: the leader streams a backup of the state (admin only).

The image is taken at the applied index once a ReadIndex round has confirmed this master is
the leader and has applied everything committed before the request, with applying held back
as for a snapshot, so it is one consistent state; its file format is
:mod:`agentflow.cluster.backup`. The client checks the whole file before trusting it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from agentflow.api.service import service
from agentflow.cluster.backup import backup_bytes
from agentflow.cluster.node import RaftLog
from agentflow.errors import ConflictError

__all__ = ["BACKUP_CHUNK_BYTES", "router"]

router = APIRouter(prefix="/api/v1/cluster")

BACKUP_CHUNK_BYTES = 1 << 20  # one write to the socket


@router.get("/backup")
async def backup(request: Request) -> StreamingResponse:
    """A backup file: magic line, JSON header (index, term, cluster, digest, SHA-256), image."""
    svc = service(request)
    log = svc.log
    if not isinstance(log, RaftLog):
        raise ConflictError("this master keeps no Raft log to back up")
    if not log.is_leader:
        raise log.not_leader()
    await log.read_barrier()
    image, digest = await log.backup()
    body = await asyncio.get_running_loop().run_in_executor(None, image.pack)
    header, head = backup_bytes(
        {
            "index": image.index,
            "term": image.term,
            "cluster_id": log.config.cluster_id,
            "cluster_uid": log.transport.uid.uid,
            "state_digest": digest,
            "taken_by": log.config.node_id,
        },
        body,
    )

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        for at in range(0, len(body), BACKUP_CHUNK_BYTES):
            yield body[at : at + BACKUP_CHUNK_BYTES]

    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={
            "X-AgentFlow-Backup-Index": str(header.index),
            "Content-Length": str(len(head) + len(body)),
        },
    )
