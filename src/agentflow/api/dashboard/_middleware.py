"""The dashboard's ASGI middleware: it serves the page and the login, and lets the page's
session cookie stand for a bearer token on every other request.

It sits between the browser guard (Host, Origin and content type are already checked) and auth:

- ``GET /`` asked for as HTML, and everything under ``/ui/``, are answered here: the page and
  its files, ``GET /ui/session`` (am I logged in, my role, my CSRF token), ``POST /ui/login``
  (``{"token": ...}``: checked, then set as the cookie) and ``POST /ui/logout``.
- Any other request with no ``Authorization`` but our cookie gets ``Authorization: Bearer`` with
  the cookie's token, so auth and role checks stay the API's own (a read-only token is refused
  every write there). A POST, PUT, PATCH or DELETE carried by the cookie must send the
  session's ``X-CSRF-Token`` (403 otherwise), before anything is read or forwarded.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agentflow.api.browser import STATE_CHANGING
from agentflow.api.dashboard._cookie import (
    CSRF_HEADER,
    TOKEN_CHARS_MAX,
    CsrfKey,
    cookie_token,
    header,
    set_cookie,
)
from agentflow.api.dashboard._static import Asset, load_assets
from agentflow.api.identity import Identity, TokenVerifier
from agentflow.api.problems import problem_response
from agentflow.errors import (
    AgentFlowError,
    AuthError,
    ClientError,
    ForbiddenError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ValidationError,
)
from agentflow.state.tokens import Role

__all__ = ["DashboardMiddleware"]

UI_PREFIX = "/ui/"
STATIC_PREFIX = "/ui/static/"
LOGIN_BODY_BYTES_MAX = TOKEN_CHARS_MAX + 256
_PAGE_ROLES = frozenset({Role.ADMIN, Role.CLIENT, Role.READ_ONLY})  # a worker's token sees nothing


class DashboardMiddleware:
    """Serves ``/`` (HTML) and ``/ui/*``; turns the session cookie into a bearer token."""

    def __init__(
        self,
        app: ASGIApp,
        verifier: TokenVerifier | None,
        catch_up: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.catch_up = catch_up
        self.csrf = CsrfKey()
        self.assets = load_assets()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["type"] == "http" and (path.startswith(UI_PREFIX) or _wants_page(scope)):
            try:
                response = await self._answer(scope, receive)
            except AgentFlowError as error:
                response = problem_response(error, path)
            await response(scope, receive, send)
            return
        token = None if self.verifier is None or _has_bearer(scope) else cookie_token(scope)
        if token is None:
            await self.app(scope, receive, send)
            return
        writes = scope["type"] == "http" and scope["method"] in STATE_CHANGING
        if writes and not self.csrf.accepts(token, header(scope, CSRF_HEADER)):
            await problem_response(_NO_CSRF, path)(scope, receive, send)
            return
        headers = [(k, v) for k, v in scope.get("headers", ()) if k != b"authorization"]
        headers.append((b"authorization", b"Bearer " + token))
        await self.app({**scope, "headers": headers}, receive, send)

    async def _answer(self, scope: Scope, receive: Receive) -> Response:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/" or path.startswith(STATIC_PREFIX):
            _only(method, "GET", "HEAD")
            name = "index.html" if path == "/" else path.removeprefix(STATIC_PREFIX)
            return self._asset(scope, name)
        if path == "/ui/session":
            _only(method, "GET")
            return JSONResponse(await self._session(scope))
        if path == "/ui/login":
            _only(method, "POST")
            return await self._login(scope, receive)
        if path == "/ui/logout":
            _only(method, "POST")
            return self._logout(scope)
        raise NotFoundError(f"no route {method} {path}")

    def _asset(self, scope: Scope, name: str) -> Response:
        asset: Asset | None = self.assets.get(name)
        if asset is None:
            raise NotFoundError(f"no dashboard file {name[:100]!r}")
        headers = {"ETag": asset.etag, "Cache-Control": "no-cache", **_SECURITY_HEADERS}
        if asset.media_type.startswith("text/html"):
            headers["Content-Security-Policy"] = _csp(scope)
        if header(scope, b"if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)

    async def _identify(self, token: bytes) -> Identity:
        assert self.verifier is not None
        try:
            return self.verifier.identify(token)
        except AuthError:
            # A token made a moment ago may not be applied on this follower yet.
            if self.catch_up is None or not await self.catch_up():
                raise
            return self.verifier.identify(token)

    async def _session(self, scope: Scope) -> dict[str, Any]:
        if self.verifier is None:
            return {"auth": False, "logged_in": True, "role": Role.ADMIN.value, "csrf": ""}
        token = cookie_token(scope)
        if token is not None:
            try:
                identity = await self._identify(token)
            except AuthError:
                token = None
        if token is None or identity.role not in _PAGE_ROLES:
            return {"auth": True, "logged_in": False, "role": None, "csrf": ""}
        role = identity.role.value
        return {"auth": True, "logged_in": True, "role": role, "csrf": self.csrf.token_for(token)}

    async def _login(self, scope: Scope, receive: Receive) -> Response:
        if self.verifier is None:
            raise ClientError("this master has no --api-token: there is nothing to log in to")
        token = _token_of(await _read_body(receive))
        identity = await self._identify(token)
        if identity.role not in _PAGE_ROLES:
            raise ForbiddenError(f"a {identity.role.value} token cannot open the dashboard")
        body = {"logged_in": True, "role": identity.role.value, "csrf": self.csrf.token_for(token)}
        cookie = set_cookie(token, secure=scope.get("scheme") == "https")
        return JSONResponse(body, headers={"Set-Cookie": cookie, "Cache-Control": "no-store"})

    def _logout(self, scope: Scope) -> Response:
        token = cookie_token(scope)
        if token is not None and not self.csrf.accepts(token, header(scope, CSRF_HEADER)):
            raise ForbiddenError("logging out needs the session's X-CSRF-Token")
        cookie = set_cookie(None, secure=scope.get("scheme") == "https")
        return JSONResponse({"logged_in": False}, headers={"Set-Cookie": cookie})


_NO_CSRF = ForbiddenError("a write from the dashboard needs its X-CSRF-Token")
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _csp(scope: Scope) -> str:
    """Only this master's own files and sockets; no inline script, no frames around it."""
    host = header(scope, b"host") or ""
    sockets = f" ws://{host} wss://{host}" if host else ""
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{sockets}; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'self'"
    )


def _wants_page(scope: Scope) -> bool:
    """``GET /`` from a browser (it asks for HTML); other clients keep the JSON index."""
    if scope["path"] != "/" or scope["method"] not in ("GET", "HEAD"):
        return False
    return "text/html" in (header(scope, b"accept") or "")


def _has_bearer(scope: Scope) -> bool:
    return header(scope, b"authorization") is not None


def _only(method: str, *allowed: str) -> None:
    if method not in allowed:
        raise MethodNotAllowedError(f"{method} is not allowed here (only {', '.join(allowed)})")


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientError("the client went away")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > LOGIN_BODY_BYTES_MAX:
            raise PayloadTooLargeError(f"a login body is at most {LOGIN_BODY_BYTES_MAX} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _token_of(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ClientError('malformed JSON: send {"token": "..."}') from exc
    if not isinstance(data, dict) or set(data) != {"token"}:
        raise ValidationError('send exactly {"token": "..."}')
    token = data["token"]
    if not isinstance(token, str) or not 0 < len(token) <= TOKEN_CHARS_MAX:
        raise ValidationError(f"token: a string of 1 to {TOKEN_CHARS_MAX} characters")
    return token.strip().encode()
