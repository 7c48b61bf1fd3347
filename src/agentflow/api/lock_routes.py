"""Routes under ``/api/v1/locks``: acquire (try or blocking), renew, release, force release, read.

A blocking acquire is one command: the state machine queues the waiter, and this handler waits
for the lock event that grants it or ends its wait (408). The state decides; the handler only
watches, so a grant made at the deadline is never answered as a timeout.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from agentflow.api.decoding import JSONResponse, read_model, read_optional_model
from agentflow.api.identity import Identity, holds_of, identity_of
from agentflow.api.schemas import (
    LOCK_NAME_PATTERN,
    LockAcquireIn,
    LockForceIn,
    LockHolderIn,
    LockReleaseIn,
    LockRenewIn,
)
from agentflow.api.service import MasterService, service
from agentflow.api.views import grant_view, lock_view
from agentflow.api.waiters import wait_for
from agentflow.errors import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    StaleTokenError,
    TimeoutExpiredError,
    ValidationError,
)
from agentflow.state.commands import (
    AcquireLock,
    CancelLockWait,
    ForceReleaseLock,
    ReleaseLock,
    RenewLock,
)
from agentflow.state.locks import Grant, LockChanges, task_session

__all__ = [
    "LOCK_NAME",
    "acquire_lock",
    "changes_view",
    "release_lock",
    "renew_lock",
    "router",
]

router = APIRouter(prefix="/api/v1")

LockName = Annotated[str, Path(pattern=LOCK_NAME_PATTERN)]
LOCK_NAME = re.compile(LOCK_NAME_PATTERN)
_GRACE_S = 5.0  # past wait_s, for the leader's expiry pass to end the wait


def _session(body: LockHolderIn, identity: Identity | None, fallback: str | None = None) -> str:
    """The lock session ``body`` names; a task token may name only its attempt's session."""
    own = identity.lock_session if identity is not None else None
    session = _named_session(body) or (own if own is not None else fallback)
    if session is None:
        raise ValidationError("say whose lock this is: session, or task_id and task_token")
    if own is not None and session != own:
        raise ForbiddenError(f"a task token holds locks as {own}, not {session}", session=own)
    return session


def _named_session(body: LockHolderIn) -> str | None:
    if body.task_id is not None and body.task_token is not None:
        return task_session(body.task_id, body.task_token)
    return body.session


@router.post("/locks/{name:path}/acquire")
async def acquire(request: Request, name: LockName) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, LockAcquireIn, svc.config.max_request_bytes)
    grant = await acquire_lock(
        svc,
        name,
        body,
        gone=request.is_disconnected,
        identity=identity_of(request.scope),
        holds=holds_of(request.scope),
    )
    return JSONResponse(grant_view(svc.machine, grant, svc.now_ms()))


async def acquire_lock(
    svc: MasterService,
    name: str,
    body: LockAcquireIn,
    *,
    gone: Callable[[], Awaitable[bool]],
    identity: Identity | None = None,
    holds: Callable[[], bool] = lambda: True,
) -> Grant:
    """Grant now, or wait (``wait_s``) for the state machine's verdict: the grant or 408.
    ``gone()`` says the client has left, ``holds()`` whether its token still holds; once either
    fails, its wait is cancelled (and a grant that came meanwhile handed back)."""
    # With no session, one is made; a request id makes it the same on a retry.
    made = f"req-{body.request_id}" if body.request_id else f"s-{secrets.token_hex(8)}"
    session = _session(body, identity, fallback=made)
    answer = await svc.log.propose(
        AcquireLock(
            now_ms=svc.now_ms(),
            name=name,
            session=session,
            ttl_ms=max(1, round(body.ttl_s * 1000)),
            mode=body.mode,
            limit=body.limit,
            wait=body.wait_s > 0,
            wait_timeout_ms=round(body.wait_s * 1000) if body.wait_s > 0 else None,
            request_id=body.request_id,
            owner=body.owner,
            metadata=body.metadata,
        )
    )
    if isinstance(answer, Grant):
        return answer
    return await _wait_for_grant(svc, name, session, body.wait_s, gone=gone, holds=holds)


async def _wait_for_grant(
    svc: MasterService,
    name: str,
    session: str,
    wait_s: float,
    *,
    gone: Callable[[], Awaitable[bool]],
    holds: Callable[[], bool],
) -> Grant:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s + _GRACE_S
    table = svc.machine.locks
    while True:
        with svc.lock_waiters.watch(session) as changed:
            held = next((g for g in table.holders(name) if g.session == session), None)
            if held is not None:
                if not holds():  # granted after its token was revoked: nobody may use it
                    await _hand_back(svc, held)
                return held
            waiting = table.waiting_for(session)
            if waiting is None or waiting.name != name:
                raise TimeoutExpiredError(
                    f"lock {name} was not granted within {wait_s:g}s", lock=name
                )
            left = give_up - loop.time()
            if left > 0 and holds() and not await gone():
                await wait_for(changed, min(left, 1.0))
                continue
        # The expiry pass is late (no leader?), the client left or its token was revoked: drop
        # the wait ourselves.
        if not svc.log.is_leader:
            raise TimeoutExpiredError(f"lock {name} was not granted in time", lock=name)
        await svc.log.propose(CancelLockWait(now_ms=svc.now_ms(), name=name, session=session))


async def _hand_back(svc: MasterService, grant: Grant) -> None:
    await svc.log.propose(
        ReleaseLock(now_ms=svc.now_ms(), name=grant.name, session=grant.session, token=grant.token)
    )
    raise AuthError("the token no longer holds (revoked, expired or its attempt ended)")


@router.post("/locks/{name:path}/renew")
async def renew(request: Request, name: LockName) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, LockRenewIn, svc.config.max_request_bytes)
    grant = await renew_lock(svc, name, body, identity_of(request.scope))
    return JSONResponse(grant_view(svc.machine, grant, svc.now_ms()))


async def renew_lock(
    svc: MasterService, name: str, body: LockRenewIn, identity: Identity | None = None
) -> Grant:
    session = _session(body, identity)
    ttl_s = body.ttl_s
    if ttl_s is None:
        held = next((g for g in svc.machine.locks.holders(name) if g.session == session), None)
        if held is None or held.token != body.token:
            raise StaleTokenError(f"token {body.token} does not hold lock {name}", lock=name)
        ttl_ms = held.ttl_ms
    else:
        ttl_ms = max(1, round(ttl_s * 1000))
    grant: Grant = await svc.log.propose(
        RenewLock(now_ms=svc.now_ms(), name=name, session=session, token=body.token, ttl_ms=ttl_ms)
    )
    return grant


@router.post("/locks/{name:path}/release")
async def release(request: Request, name: LockName) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, LockReleaseIn, svc.config.max_request_bytes)
    changes = await release_lock(svc, name, body, identity_of(request.scope))
    return JSONResponse(changes_view(name, changes))


async def release_lock(
    svc: MasterService, name: str, body: LockReleaseIn, identity: Identity | None = None
) -> LockChanges:
    session = _session(body, identity)
    changes: LockChanges = await svc.log.propose(
        ReleaseLock(now_ms=svc.now_ms(), name=name, session=session, token=body.token)
    )
    return changes


@router.post("/locks/{name:path}/force-release")
async def force_release(request: Request, name: LockName) -> JSONResponse:
    svc = service(request)
    body = await read_optional_model(request, LockForceIn, svc.config.max_request_bytes)
    reason = None if body is None else body.reason
    changes: LockChanges = await svc.log.propose(
        ForceReleaseLock(now_ms=svc.now_ms(), name=name, reason=reason)
    )
    return JSONResponse(changes_view(name, changes))


def changes_view(name: str, changes: LockChanges) -> dict[str, Any]:
    return {
        "name": name,
        "released": [{"session": g.session, "token": g.token} for g in changes.ended],
        "granted": [{"session": g.session, "token": g.token} for g in changes.granted],
    }


@router.get("/locks")
async def list_locks(request: Request, session: str | None = None) -> JSONResponse:
    """Every lock held or waited for; ``?session=`` keeps those the session holds or waits on."""
    svc = service(request)
    table = svc.machine.locks
    now = svc.now_ms()
    names = table.names()
    if session is not None:
        names = [
            n
            for n in names
            if any(g.session == session for g in table.holders(n))
            or any(w.session == session for w in table.waiters(n))
        ]
    locks = [lock_view(svc.machine, n, now, history=False) for n in names]
    return JSONResponse({"locks": locks, "count": len(locks)})


@router.get("/locks/{name:path}")
async def get_lock(request: Request, name: LockName) -> JSONResponse:
    svc = service(request)
    table = svc.machine.locks
    if name not in table.names() and not any(e.name == name for e in table.history):
        raise NotFoundError(f"no lock {name}", lock=name)
    return JSONResponse(lock_view(svc.machine, name, svc.now_ms(), history=True))
