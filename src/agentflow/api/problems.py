"""Errors as ``application/problem+json``, and auth.

Every error the API returns goes through :func:`problem_response`, whatever raised it: our own
error tree, pydantic validation, malformed JSON, unknown routes, oversize bodies.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

import pydantic
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    """Bearer-token check for every HTTP request and WebSocket but the health probes."""

    OPEN_PATHS = frozenset({"/health", "/api/v1/health"})

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["path"] in self.OPEN_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()  # the connect message
            close: Message = {"type": "websocket.close", "code": 4401, "reason": "unauthorized"}
            await send(close)
            return
        response = problem_response(AuthError("missing or wrong bearer token"), scope["path"])
        await response(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        assert self.token is not None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(given.strip(), self.token)
        return False


def dumps(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
