"""Routes under ``/api/v1/messages``: send, request-reply, history.

A send is one command; its answer lists who received it (and whose inbox was full). A request
is a send with ``requires_response`` that then waits for the reply the state machine records as
the answer (``ReplyArrived``), or answers 408 when ``timeout_ms`` runs out. The state decides
what is in time; this handler only watches.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from agentflow.api.decoding import JSONResponse, read_model
from agentflow.api.identity import identity_of
from agentflow.api.schemas import MessageBatchIn, MessageIn, RequestIn
from agentflow.api.service import MasterService, service
from agentflow.api.views import message_view
from agentflow.api.waiters import wait_for
from agentflow.errors import (
    AgentFlowError,
    ForbiddenError,
    PayloadTooLargeError,
    TimeoutExpiredError,
    ValidationError,
)
from agentflow.state.commands import SendMessage, SendMessages
from agentflow.state.messages import Sent

__all__ = ["router", "send_command", "sender_of", "sent_view"]

router = APIRouter(prefix="/api/v1")

MAX_PAGE = 1000


def send_command(svc: MasterService, body: MessageIn, sender: str, **extra: Any) -> SendMessage:
    """The SendMessage for ``body`` (413 if its content is too large), with a fresh id if the
    client gave none."""
    size = len(json.dumps(body.content, separators=(",", ":")).encode())
    limit = svc.machine.messages.limits.max_message_bytes
    if size > limit:
        raise PayloadTooLargeError(f"message content of {size} bytes exceeds {limit}")
    return SendMessage(
        now_ms=svc.now_ms(),
        id=body.id or "msg-" + secrets.token_hex(10),
        sender=sender,
        to=body.address,
        type=body.type,
        content=body.content,
        correlation_id=body.correlation_id,
        requires_response=body.requires_response,
        ttl_ms=body.ttl_ms,
        size=size,
        **extra,
    )


def sender_of(request: Request, given: str | None, default: str) -> str:
    """Who sends: a task token's agent id (a different explicit ``from`` is refused with 403),
    else the ``from`` given, else ``default``."""
    identity = identity_of(request.scope)
    if identity is None or identity.task_id is None:
        return given or default
    if given is not None and given != identity.task_id:
        raise ForbiddenError(
            f"a task token sends as {identity.task_id}, not {given}", agent=identity.task_id
        )
    return identity.task_id


@router.post("/messages", status_code=201)
async def send_message(request: Request) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, MessageIn, svc.config.max_request_bytes)
    if body.requires_response:
        raise ValidationError("a message that requires a response goes to /messages/request")
    sender = sender_of(request, body.sender, "api")
    sent: Sent = await svc.log.propose(send_command(svc, body, sender))
    view = message_view(sent.message) | {"duplicate": sent.duplicate}
    return JSONResponse(view, status_code=200 if sent.duplicate else 201)


@router.post("/messages/batch", status_code=201)
async def send_messages(request: Request) -> JSONResponse:
    """Up to 1,000 messages in one durable command, delivered in order. Each is accepted or
    refused on its own: a refused one carries its problem, the others are delivered."""
    svc = service(request)
    body = await read_model(request, MessageBatchIn, svc.config.max_request_bytes)
    commands = []
    for one in body.messages:
        if one.requires_response:
            raise ValidationError("a request cannot be part of a batch: use /messages/request")
        commands.append(send_command(svc, one, sender_of(request, one.sender, "api")))
    results = await svc.log.propose(SendMessages(now_ms=svc.now_ms(), messages=commands))
    out = [sent_view(c, r) for c, r in zip(commands, results, strict=True)]
    refused = sum(1 for item in out if "error" in item)
    return JSONResponse({"messages": out, "count": len(out), "refused": refused}, status_code=201)


def sent_view(command: SendMessage, result: Sent | AgentFlowError) -> dict[str, Any]:
    """One message's answer in a batch: the message, or its problem."""
    if isinstance(result, Sent):
        return message_view(result.message) | {"duplicate": result.duplicate}
    return {"id": command.id, "error": result.to_problem()}


@router.post("/messages/request")
async def request_reply(request: Request) -> JSONResponse:
    """Send a request and wait for its reply: 404 ``no-responder`` at once when no live agent
    can take it, 408 when no reply came within ``timeout_ms``."""
    svc = service(request)
    body = await read_model(request, RequestIn, svc.config.max_request_bytes)
    body.requires_response = True
    requester = sender_of(request, body.sender, "client-" + secrets.token_hex(6))
    command = send_command(svc, body, requester, timeout_ms=body.timeout_ms)
    correlation_id = body.correlation_id or command.id
    command = replace(command, correlation_id=correlation_id)
    sent: Sent = await svc.log.propose(command)
    deadline = asyncio.get_running_loop().time() + body.timeout_ms / 1000.0
    answers = svc.machine.messages.answers
    while True:
        with svc.reply_waiters.watch(correlation_id) as arrived:
            reply = answers.get(correlation_id)
            if reply is not None:
                return JSONResponse(
                    {"request": message_view(sent.message), "reply": message_view(reply)}
                )
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutExpiredError(
                    f"no reply from {body.address} within {body.timeout_ms} ms",
                    request_id=sent.message.id,
                    correlation_id=correlation_id,
                )
            await wait_for(arrived, left)


def _time_ms(value: str | None, what: str) -> int | None:
    if not value:  # absent, or given empty (?since=): no bound
        return None
    if value.isdigit():
        return int(value)
    try:
        return int(datetime.fromisoformat(value).timestamp() * 1000)
    except ValueError:
        raise ValidationError(f"{what} must be epoch milliseconds or ISO 8601") from None


@router.get("/messages")
async def history(
    request: Request,
    *,
    agent: str | None = None,
    type: str | None = None,
    correlation_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> JSONResponse:
    """The newest ``limit`` messages passing every filter, oldest first."""
    svc = service(request)
    found = svc.machine.messages.query(
        agent=agent,
        type_=type,
        correlation_id=correlation_id,
        since_ms=_time_ms(since, "since"),
        until_ms=_time_ms(until, "until"),
        limit=limit,
    )
    messages = [message_view(m) for m in found]
    return JSONResponse({"messages": messages, "count": len(messages)})
