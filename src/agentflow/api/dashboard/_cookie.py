"""The dashboard's session cookie and its CSRF token.

The cookie holds the API token itself (base64url, HttpOnly, SameSite=Strict): auth stays where
it is (the token is checked on every request, so a revoked token logs the page out), and a
master restart keeps the page logged in. A write carried by the cookie must also send
``X-CSRF-Token``: an HMAC of the token under a key of this process, which only a page of this
origin can read (``GET /ui/session``; the browser guard refuses foreign origins).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from http.cookies import SimpleCookie

from starlette.types import Scope

__all__ = ["COOKIE", "CSRF_HEADER", "CsrfKey", "cookie_token", "header", "set_cookie"]

COOKIE = "agentflow_session"
CSRF_HEADER = b"x-csrf-token"
TOKEN_CHARS_MAX = 4096  # a token longer than this is no token this master issued


class CsrfKey:
    """The per-process key CSRF tokens are derived with."""

    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)

    def token_for(self, api_token: bytes) -> str:
        return hmac.new(self._key, api_token, hashlib.sha256).hexdigest()

    def accepts(self, api_token: bytes, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.token_for(api_token), given)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def cookie_token(scope: Scope) -> bytes | None:
    """The API token the session cookie carries, or None (no cookie, or not one of ours)."""
    raw = header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header is no session, not an error
        return None
    morsel = jar.get(COOKIE)
    if morsel is None or not morsel.value or len(morsel.value) > TOKEN_CHARS_MAX:
        return None
    try:
        return base64.urlsafe_b64decode(morsel.value.encode("ascii"))
    except (binascii.Error, ValueError):
        return None


def set_cookie(api_token: bytes | None, *, secure: bool) -> str:
    """A ``Set-Cookie`` value: the session for ``api_token``, or one that ends it (None)."""
    value = "" if api_token is None else base64.urlsafe_b64encode(api_token).decode("ascii")
    parts = [f"{COOKIE}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if api_token is None:
        parts.append("Max-Age=0")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
