"""The HTTP server of a master: uvicorn with bounded connections and bounded waits on clients.

uvicorn arms a timer on a connection only after it has answered a request (keep-alive): a socket
that connects and sends nothing, or half a request line, is held for ever. Hundreds of those made
a master unresponsive. :class:`GuardedHttpProtocol` adds the missing timers to uvicorn's
httptools protocol:

- from connect (or the first byte of a request) until its headers are complete:
  ``header_timeout_s``; a socket that sent nothing is closed silently, a half-sent request gets
  a 408 problem+json, then the connection is closed;
- while a request body is arriving: ``idle_timeout_s`` between two chunks;
- between requests on a kept-alive connection: ``idle_timeout_s`` (uvicorn's own keep-alive).

Beyond ``max_connections`` open connections (idle ones included) a request is answered 503
at once. WebSockets are pinged and closed when a ping goes unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import socket
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agentflow import wire
from agentflow.config import MasterConfig

__all__ = ["GuardedHttpProtocol", "uvicorn_config"]

WS_PING_INTERVAL_S = 20.0
WS_PING_TIMEOUT_S = 20.0
MAX_INCOMPLETE_EVENT_BYTES = 64 << 10  # request line and headers (used by the h11 parser)


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """Send each write at once. uvicorn writes an answer's head and body separately; with
    Nagle's algorithm on, the body waits for the client's ACK of the head, which the client
    delays (~40 ms on Linux): every answer on a kept-alive connection but the first took
    44 ms on loopback. The socket of a TLS transport is the same TCP socket."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def uvicorn_config(app: Any, config: MasterConfig) -> uvicorn.Config:
    """The uvicorn settings of a master (``agentflow master`` and the embedded one alike)."""

    class _Protocol(GuardedHttpProtocol):
        header_timeout_s = config.header_timeout_s
        body_idle_timeout_s = config.idle_timeout_s

    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=config.log_level.lower(),
        # JSON logs: uvicorn's loggers go through the root logger's JSON handler.
        log_config=None if config.log_format == "json" else LOGGING_CONFIG,
        access_log=False,
        http=_Protocol,
        ws="websockets-sansio",
        ws_max_size=wire.MAX_FRAME_BYTES,
        ws_ping_interval=WS_PING_INTERVAL_S,
        ws_ping_timeout=WS_PING_TIMEOUT_S,
        limit_concurrency=config.max_connections,
        # uvicorn takes whole seconds here; never round a short setting down to "no wait".
        timeout_keep_alive=max(1, math.ceil(config.idle_timeout_s)),
        h11_max_incomplete_event_size=MAX_INCOMPLETE_EVENT_BYTES,
        timeout_graceful_shutdown=5,
        ssl_certfile=config.tls_cert,
        ssl_keyfile=config.tls_key,
    )


def _timeout_response() -> bytes:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Request timeout",
            "status": 408,
            "detail": "the request's headers or body did not arrive in time",
        }
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\n"
        "content-type: application/problem+json\r\n"
        "connection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header timeout and a body idle timeout.

    Relies on uvicorn's parser callbacks (``on_message_begin``, ``on_headers_complete``,
    ``on_body``, ``on_message_complete``), which every uvicorn release since 0.29 has.
    """

    header_timeout_s: float = 10.0
    body_idle_timeout_s: float = 15.0
    _guard: asyncio.TimerHandle | None = None
    _partial: bool = False  # some of a request arrived, not all of its headers

    def _arm(self, delay_s: float) -> None:
        self._disarm()
        self._guard = self.loop.call_later(delay_s, self._timed_out)

    def _disarm(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _timed_out(self) -> None:
        self._guard = None
        if self.transport.is_closing():
            return
        idle = self.cycle is None or self.cycle.response_complete
        if self._partial and idle:
            self.transport.write(_timeout_response())
        # A request whose body stalled learns of it as a disconnect (connection_lost).
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        _no_delay(transport)
        self._arm(self.header_timeout_s)

    def data_received(self, data: bytes) -> None:
        if data and self._guard is None and not self._body_expected():
            # The first bytes of a request on a kept-alive connection.
            self._arm(self.header_timeout_s)
        if data and not self._body_expected():
            self._partial = True
        super().data_received(data)

    def _body_expected(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.more_body and not cycle.response_complete

    def on_headers_complete(self) -> None:
        self._partial = False
        self._disarm()
        super().on_headers_complete()
        if self.parser.should_upgrade() and self._should_upgrade():
            return
        if self._has_body():
            self._arm(self.body_idle_timeout_s)

    def _has_body(self) -> bool:
        for name, value in self.headers:
            if name == b"content-length":
                return value.strip() not in (b"0", b"")
            if name == b"transfer-encoding":
                return True
        return False

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._guard is not None:
            self._arm(self.body_idle_timeout_s)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the WebSocket protocol takes over, with its own pings
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
