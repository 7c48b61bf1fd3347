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

from agentflow.api.identity import SCOPE_KEY, TokenVerifier, authorize
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
    """Every HTTP request and WebSocket but the health probes: the bearer token resolves to an
    identity (401 when unknown, expired or revoked), whose role must allow the route (403).
    With no verifier (a master without ``--api-token``) everything is open, as before."""

    OPEN_PATHS = frozenset({"/health", "/api/v1/health"})

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
        if kind == "websocket":
            receive = self._rechecked(given, receive, send)
        await self.app(scope, receive, send)

    def _rechecked(self, given: bytes, receive: Receive, send: Send) -> Receive:
        """A socket outlives its handshake: each frame it brings is let in only while its
        token still holds (not revoked or expired, its attempt still running)."""
        verifier = self.verifier
        assert verifier is not None

        async def receive_checked() -> Message:
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            try:
                verifier.identify(given)
            except AuthError as exc:
                close: Message = {
                    "type": "websocket.close",
                    "code": 4401,
                    "reason": _short(exc.detail),
                }
                with contextlib.suppress(Exception):  # the app may have closed it meanwhile
                    await send(close)
                return {"type": "websocket.disconnect", "code": 4401}
            return message

        return receive_checked


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
