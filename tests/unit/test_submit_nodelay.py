"""The master's HTTP sockets send each write at once (TCP_NODELAY).

uvicorn writes an answer's head and body in two writes; with Nagle's algorithm the body waited
for the client's delayed ACK of the head, about 40 ms, on every answer of a kept-alive
connection but the first (measured: GET /health 44 ms -> 0.3 ms on loopback).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from agentflow.api.serving import GuardedHttpProtocol, _no_delay


class _Transport(asyncio.Transport):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self.sock = sock

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" else default


def _pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    server = socket.create_server(("127.0.0.1", 0))  # proto 0, as uvicorn's own sockets
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    return server, client, accepted


def test_an_accepted_socket_gets_no_delay() -> None:
    server, client, accepted = _pair()
    with server, client, accepted:
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        _no_delay(_Transport(accepted))
        assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_the_http_protocol_sets_it_on_connect() -> None:
    """Structural: the protocol's connection_made calls it (the effect is only a timing)."""
    assert "_no_delay" in GuardedHttpProtocol.connection_made.__code__.co_names
