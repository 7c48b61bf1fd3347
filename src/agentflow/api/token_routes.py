"""Routes under ``/api/v1/tokens``: create, list and revoke role tokens (admin only).

The secret is made here, on the leader, and shown once in the creation's answer; the command
that reaches the log (and every replica, snapshot and peer frame) carries only its sha256.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Annotated, Any, Literal

import pydantic
from fastapi import APIRouter, Path, Request

from agentflow.api.decoding import JSONResponse, read_model
from agentflow.api.identity import ROLE_PREFIX
from agentflow.api.service import service
from agentflow.errors import ConflictError
from agentflow.state.commands import CreateToken, RevokeToken
from agentflow.state.tokens import TokenRecord

__all__ = ["TokenIn", "router", "token_view"]

router = APIRouter(prefix="/api/v1")

TTL_S_MAX = 10 * 365 * 86_400.0
TokenIdPath = Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]


class TokenIn(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    role: Literal["client", "worker", "read-only"]
    ttl_s: Annotated[float, pydantic.Field(gt=0, le=TTL_S_MAX, allow_inf_nan=False)] | None = None
    name: Annotated[str, pydantic.Field(max_length=200)] = ""


def token_view(record: TokenRecord, now_ms: int) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role.value,
        "created_ms": record.created_ms,
        "expires_ms": record.expires_ms,
        "expired": record.expired(now_ms),
    }


@router.post("/tokens", status_code=201)
async def create_token(request: Request) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, TokenIn, svc.config.max_request_bytes)
    if svc.verifier is None:
        raise ConflictError("this master has no --api-token: it checks no token, so makes none")
    token_id, secret = secrets.token_hex(6), secrets.token_hex(24)
    now_ms = svc.now_ms()
    record: TokenRecord = await svc.log.propose(
        CreateToken(
            now_ms=now_ms,
            id=token_id,
            name=body.name,
            role=body.role,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            expires_ms=None if body.ttl_s is None else now_ms + round(body.ttl_s * 1000),
        )
    )
    view = token_view(record, now_ms) | {"token": f"{ROLE_PREFIX}{token_id}_{secret}"}
    return JSONResponse(view, status_code=201)


@router.get("/tokens")
async def list_tokens(request: Request) -> JSONResponse:
    svc = service(request)
    now_ms = svc.now_ms()
    tokens = [token_view(t, now_ms) for t in svc.machine.tokens.tokens.values()]
    return JSONResponse({"tokens": tokens, "count": len(tokens)})


@router.delete("/tokens/{token_id}")
async def revoke_token(request: Request, token_id: TokenIdPath) -> JSONResponse:
    svc = service(request)
    record: TokenRecord = await svc.log.propose(RevokeToken(now_ms=svc.now_ms(), id=token_id))
    return JSONResponse(token_view(record, svc.now_ms()) | {"revoked": True})
