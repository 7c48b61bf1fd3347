"""Routes under ``/api/v1/cluster``: status, membership, leadership transfer."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from pydantic import AfterValidator, Field

from agentflow.api.decoding import JSONResponse, read_model
from agentflow.api.schemas import Name, _Strict
from agentflow.api.service import MasterService, service
from agentflow.errors import ConflictError, NotFoundError
from agentflow.raft import ConfChangeType

__all__ = ["router"]

router = APIRouter(prefix="/api/v1/cluster")


_HOST = re.compile(r"[A-Za-z0-9_.\-]+|\[[0-9A-Fa-f:.]+\]")  # a name, IPv4, or [IPv6]
ADDRESS_CHARS_MAX = 300


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"port must be 1..65535, got {text!r:.20}")
    return int(text)


def _raft_address(text: str) -> str:
    """``host:port``: a host name or IP (IPv6 in brackets), a port 1..65535, no spaces."""
    host, sep, port = text.rpartition(":")
    if not sep or not _HOST.fullmatch(host):
        raise ValueError("must be host:port (an IPv6 host in brackets)")
    _port(port)
    return text


def _api_url(text: str) -> str:
    """An http(s) URL with a host (and, if given, a port 1..65535), no spaces."""
    if any(c.isspace() for c in text):
        raise ValueError("must not contain spaces")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError("its port must be 1..65535")
    return text


class MemberIn(_Strict):
    """A master to add. It joins as a learner (``voter: false``, the default) and the leader
    promotes it once it has caught up. ``voter: true`` promotes a caught-up learner now; for
    an id that is not a member it is refused (409) unless ``force`` (a voter that never
    answers counts against the quorum)."""

    id: Name
    raft_address: Annotated[str, Field(max_length=ADDRESS_CHARS_MAX), AfterValidator(_raft_address)]
    api_url: Annotated[str, Field(max_length=ADDRESS_CHARS_MAX), AfterValidator(_api_url)]
    voter: bool = False
    force: bool = False


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
    conf = svc.log.raft_status.conf_state
    if not body.voter:
        if body.id in conf.voters:
            raise ConflictError(f"{body.id} is already a voter", node_id=body.id)
        kind = ConfChangeType.ADD_LEARNER
        status = await svc.log.change_membership(kind, body.id, body.raft_address, body.api_url)
        return JSONResponse(status)
    if body.id in conf.voters:
        return JSONResponse(svc.log.status())  # already one (the leader may have promoted it)
    if body.id not in conf.learners and not body.force:
        raise ConflictError(
            f"{body.id} is not a member: add it as a learner (it becomes a voter once it has"
            " caught up), or pass force to add a voter that has no copy of the log",
            node_id=body.id,
        )
    if body.id in conf.learners:
        status = await svc.log.add_voter(body.id, body.raft_address, body.api_url)
    else:
        kind = ConfChangeType.ADD_VOTER
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
