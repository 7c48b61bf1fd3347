"""The browser guard: a web page cannot drive a master.

A browser will send a request to any address a page names, including 127.0.0.1, with the
user's network position. Three checks, before auth and before anything is read or forwarded:

- **Host** (DNS rebinding: a page's own name pointed at 127.0.0.1): the ``Host`` header must be
  one this master serves: ``localhost``, an IP literal (no DNS, so nothing to rebind), the bind
  host, the advertise URL's host, or a ``--public-host``. Otherwise 421.
- **Origin** (cross-site requests): a request carrying an ``Origin`` that is not this master's
  own (same scheme-less host and port as ``Host``) nor one of ``--allowed-origins`` is refused
  with 403, WebSocket upgrades included (closed with 4403 before the accept). Clients that are
  not browsers send no Origin and pass.
- **Content type** (forms need no preflight): a POST, PUT, PATCH or DELETE that has a body or
  names a content type must name ``application/json`` (or ``application/*+json``): 415.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentflow.api.problems import problem_response
from agentflow.config import MasterConfig
from agentflow.errors import (
    AgentFlowError,
    ForeignOriginError,
    UnknownHostError,
    UnsupportedMediaTypeError,
)

__all__ = ["BrowserGuard", "served_hosts"]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def served_hosts(config: MasterConfig) -> frozenset[str]:
    """The host names (not IP literals: every one of those is served) this master answers to."""
    names = {"localhost"}
    if config.host not in _WILDCARDS:
        names.add(config.host)
    if config.advertise_url:
        names.add(urlsplit(config.advertise_url).hostname or "")
    names.update(_items(config.public_hosts))
    return frozenset(_normal_host(n) for n in names if n)


def _items(values: Iterable[str]) -> list[str]:
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")


def _split_host(value: str) -> tuple[str, int | None]:
    """``host[:port]`` (IPv6 in brackets) as the normalised host and the port, if any."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, colon, port = value.rpartition(":")
        if not colon or ":" in host:  # no port, or a bare IPv6 address
            host, port = value, ""
    return _normal_host(host), int(port) if port.isdigit() else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class BrowserGuard:
    """ASGI middleware refusing what only a browser tricked by a page would send."""

    def __init__(self, app: ASGIApp, config: MasterConfig) -> None:
        self.app = app
        self.hosts = served_hosts(config)
        origins = _items(config.allowed_origins)
        self.any_origin = "*" in origins
        self.origins = frozenset(o.lower().rstrip("/") for o in origins if o != "*")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        error = self.refusal(scope)
        if error is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()  # the connect message; closing before accept answers 403
            close: Message = {"type": "websocket.close", "code": 4403, "reason": error.code}
            await send(close)
        else:
            await problem_response(error, scope.get("path"))(scope, receive, send)

    def refusal(self, scope: Scope) -> AgentFlowError | None:
        """Why this request is refused, or None."""
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        host = headers.get(b"host")
        if host is not None and not self._serves(_split_host(host)[0]):
            return UnknownHostError(f"this master does not serve host {host[:100]!r}")
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin, host, scope):
            return ForeignOriginError(
                f"requests from origin {origin[:100]!r} are refused (see --allowed-origins)"
            )
        if scope["type"] == "http" and scope["method"] in STATE_CHANGING:
            return _content_type_refusal(headers)
        return None

    def _serves(self, host: str) -> bool:
        return host in self.hosts or _is_ip(host)

    def _origin_allowed(self, origin: str, host: str | None, scope: Scope) -> bool:
        if self.any_origin or origin.lower().rstrip("/") in self.origins:
            return True
        try:
            parts = urlsplit(origin)
            origin_port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        if host is None or not parts.hostname or origin_port is None:
            return False
        name, port = _split_host(host)
        scheme = str(scope.get("scheme", "http"))
        port = port or _DEFAULT_PORTS.get(scheme)
        return _normal_host(parts.hostname) == name and origin_port == port


def _content_type_refusal(headers: dict[bytes, str]) -> AgentFlowError | None:
    given = headers.get(b"content-type")
    if given is None:
        length = headers.get(b"content-length", "0").strip()
        if length in ("", "0") and b"transfer-encoding" not in headers:
            return None  # no body at all (a cancel, a disconnect): nothing to misread
        return UnsupportedMediaTypeError("send the body as Content-Type: application/json")
    media = given.split(";", 1)[0].strip().lower()
    kind, _, subtype = media.partition("/")
    if kind == "application" and (subtype == "json" or subtype.endswith("+json")):
        return None
    return UnsupportedMediaTypeError(
        f"Content-Type {media[:100]!r} is refused: send application/json"
    )
