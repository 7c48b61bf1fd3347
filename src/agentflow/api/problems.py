"""Errors as ``application/problem+json``, and auth.

Every error the API returns goes through :func:`problem_response`, whatever raised it: our own
error tree, pydantic validation, malformed JSON, unknown routes, oversize bodies.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentflow.api.identity import (
    CLOSE_REVOKED,
    HOLDS_KEY,
    SCOPE_KEY,
    TokenVerifier,
    authorize,
)
from agentflow.api.index_routes import PUBLIC_PATHS
from agentflow.errors import (
    AgentFlowError,
    AuthError,
    ClientError,
    ValidationError,
)

__all__ = ["AuthMiddleware", "problem_response", "validation_error"]

PROBLEM_JSON = "application/problem+json"


def problem_response(error: AgentFlowError, instance: str | None = None) -> JSONResponse:
    headers = {}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="agentflow"'
    return JSONResponse(
        error.to_problem(instance),
        status_code=error.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def validation_error(exc: pydantic.ValidationError) -> AgentFlowError:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return ClientError(f"malformed JSON: {errors[0].get('msg', '')}")
    problems: list[dict[str, Any]] = []
    for e in errors[:50]:
        where = ".".join(str(p) for p in e["loc"]) or "body"
        message = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            message = "unknown field"
        problems.append({"field": where, "message": message})
    summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems[:5])
    return ValidationError(summary or "invalid request", errors=problems)


class AuthMiddleware:
    """Every HTTP request and WebSocket but the health probes and the static pages about the
    API (the index and the docs, :data:`~agentflow.api.index_routes.PUBLIC_PATHS`): the bearer
    token resolves to an identity (401 when unknown, expired or revoked), whose role must allow
    the route (403). With no verifier (a master without ``--api-token``) everything is open."""

    OPEN_PATHS = frozenset(
        {"/health", "/api/v1/health", "/health/ready", "/api/v1/health/ready", *PUBLIC_PATHS}
    )

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier | None,
        catch_up: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.catch_up = catch_up  # a follower applies what is committed: True if it did

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if self.verifier is None or kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        try:
            given = _bearer(scope)
            try:
                identity = self.verifier.identify(given)
            except AuthError:
                # A token made (or an attempt started) a moment ago may not be applied here
                # yet: a follower catches up with the leader once, then decides.
                if self.catch_up is None or not await self.catch_up():
                    raise
                identity = self.verifier.identify(given)
            method = "WS" if kind == "websocket" else scope["method"]
            authorize(identity, method, scope["path"])
        except AgentFlowError as refused:
            await _refuse(refused, scope, receive, send)
            return
        scope[SCOPE_KEY] = identity
        holds = _holds(self.verifier, given)
        scope[HOLDS_KEY] = holds
        if kind == "websocket":
            receive, send = _rechecked_receive(holds, receive, send), _rechecked_send(holds, send)
        else:
            send = _answers_while(holds, scope["path"], send)
        await self.app(scope, receive, send)


def _holds(verifier: TokenVerifier, given: bytes) -> Callable[[], bool]:
    def holds() -> bool:
        try:
            verifier.identify(given)
        except AuthError:
            return False
        return True

    return holds


# A socket outlives its handshake, and a streamed answer its first chunk: each frame in either
# direction, and each further chunk, passes only while the token still holds.


def _rechecked_receive(holds: Callable[[], bool], receive: Receive, send: Send) -> Receive:
    async def receive_checked() -> Message:
        message = await receive()
        if message["type"] != "websocket.receive" or holds():
            return message
        await _close_revoked(send)
        return {"type": "websocket.disconnect", "code": CLOSE_REVOKED}

    return receive_checked


def _rechecked_send(holds: Callable[[], bool], send: Send) -> Send:
    async def send_checked(message: Message) -> None:
        if message["type"] == "websocket.send" and not holds():
            await _close_revoked(send)
            return
        await send(message)

    return send_checked


def _answers_while(holds: Callable[[], bool], path: str, send: Send) -> Send:
    """An answer goes out only while the token holds: one that waited (a long-poll, a lock
    wait) becomes a 401 if the token was revoked meanwhile, and a stream ends there."""
    refused = False

    async def send_checked(message: Message) -> None:
        nonlocal refused
        if refused:
            return
        kind = message["type"]
        if kind == "http.response.start" and not holds():
            refused = True
            await _send_response(problem_response(_NO_LONGER, path), send)
            return
        if kind == "http.response.body" and message.get("more_body") and not holds():
            refused = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send(message)

    return send_checked


_NO_LONGER = AuthError("the token no longer holds (revoked, expired or its attempt ended)")


async def _send_response(response: JSONResponse, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response.raw_headers,
        }
    )
    await send({"type": "http.response.body", "body": response.body})


async def _close_revoked(send: Send) -> None:
    close: Message = {
        "type": "websocket.close",
        "code": CLOSE_REVOKED,
        "reason": "the token no longer holds (revoked, expired or its attempt ended)",
    }
    with contextlib.suppress(Exception):  # the app may have closed it meanwhile
        await send(close)


def _bearer(scope: Scope) -> bytes:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, given = value.partition(b" ")
            if scheme.lower() == b"bearer":
                return bytes(given.strip())
    raise AuthError("missing bearer token")


async def _refuse(error: AgentFlowError, scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await receive()  # the connect message
        code = 4403 if error.status == 403 else 4401
        close: Message = {"type": "websocket.close", "code": code, "reason": _short(error.detail)}
        await send(close)
        return
    await problem_response(error, scope["path"])(scope, receive, send)


def _short(reason: str) -> str:
    """A close reason fits in 123 bytes."""
    return reason.encode()[:120].decode(errors="ignore")


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
