"""Routes under ``/api/v1/cluster``: status, membership, leadership transfer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field

from agentflow.api.decoding import JSONResponse, read_model
from agentflow.api.schemas import Name, _Strict
from agentflow.api.service import MasterService, service
from agentflow.errors import NotFoundError
from agentflow.raft import ConfChangeType

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/cluster")


class MemberIn(_Strict):
    id: Name
    raft_address: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")]
    api_url: Annotated[str, Field(pattern=r"^https?://")]
    voter: bool = False


class TransferIn(_Strict):
    to: Name | None = None


@router.get("")
async def cluster_status(request: Request, digest: bool = False) -> JSONResponse:
    """This master's view of the cluster; ``digest=true`` adds a hash of its replicated state
    (equal on masters that applied the same log: compare at equal ``state_applied_index``)."""
    svc = service(request)
    status = svc.log.status()
    if digest:
        status["state_digest"] = svc.machine.digest()
        status["state_applied_index"] = svc.machine.applied_index
    return JSONResponse(status)


@router.post("/members")
async def add_member(request: Request) -> JSONResponse:
    """Add a learner (``voter: false``), or promote a member to voter (``voter: true``)."""
    svc = service(request)
    if not svc.log.is_leader:
        raise svc.log.not_leader()
    body = await read_model(request, MemberIn, svc.config.max_request_bytes)
    kind = ConfChangeType.ADD_VOTER if body.voter else ConfChangeType.ADD_LEARNER
    status = await svc.log.change_membership(kind, body.id, body.raft_address, body.api_url)
    return JSONResponse(status)


@router.delete("/members/{node_id}")
async def remove_member(request: Request, node_id: str) -> JSONResponse:
    svc = service(request)
    if not svc.log.is_leader:
        raise svc.log.not_leader()
    if node_id not in svc.log.members:
        raise NotFoundError(f"no member {node_id}", node_id=node_id)
    status = await svc.log.change_membership(ConfChangeType.REMOVE_NODE, node_id)
    return JSONResponse(status)


@router.post("/transfer-leadership")
async def transfer_leadership(request: Request) -> JSONResponse:
    svc = service(request)
    if not svc.log.is_leader:
        raise svc.log.not_leader()
    body = await read_model(request, TransferIn, svc.config.max_request_bytes)
    target = body.to or _best_successor(svc)
    await svc.log.transfer_leadership(target)
    return JSONResponse(svc.log.status())


def _best_successor(svc: MasterService) -> str:
    status = svc.log.status()
    voters = [m for m in status["members"] if m["role"] == "voter" and m["connected"]]
    if not voters:
        raise NotFoundError("no other connected voter to hand leadership to")
    return str(min(voters, key=lambda m: (m["lag"] or 0, m["id"]))["id"])
