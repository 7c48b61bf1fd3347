"""Finding 8: idle and half-sent connections are closed; the master keeps answering.

Before the fix, a socket that connected and sent nothing (or half a request) was held for ever:
400 of them made a master unresponsive.
"""

from __future__ import annotations

import selectors
import socket
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.procs import Processes

IDLE_SOCKETS = 400
HALF_SENT = 40
DEADLINE_S = 30.0  # generous: the default timeouts are 10 s (headers) and 15 s (body)

pytestmark = pytest.mark.slow  # real master and worker processes


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    sock.setblocking(False)
    return sock


def _read_until_eof(socks: list[socket.socket], deadline_s: float) -> dict[socket.socket, bytes]:
    """What each socket received before the server closed it; fails if one stays open."""
    received = {s: b"" for s in socks}
    selector = selectors.DefaultSelector()
    for s in socks:
        selector.register(s, selectors.EVENT_READ)
    open_ = set(socks)
    deadline = time.monotonic() + deadline_s
    while open_ and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[sock] += chunk
            else:
                selector.unregister(sock)
                open_.discard(sock)
    selector.close()
    assert not open_, f"{len(open_)} of {len(socks)} connections still open after {deadline_s}s"
    return received


def test_idle_and_half_sent_connections_are_closed(procs: Processes) -> None:
    _, url = procs.master("m1")  # default limits: a header timeout of 10 s
    idle = [_connect(url) for _ in range(IDLE_SOCKETS)]
    half = [_connect(url) for _ in range(HALF_SENT)]
    for sock in half:
        sock.send(b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
    stalled = _connect(url)
    stalled.send(
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"command": '
    )
    try:
        # The master answers while every one of them is open ...
        assert httpx.get(url + "/health", timeout=10.0).status_code == 200
        # ... and closes each: silently when nothing was sent, with a 408 when half a request.
        received = _read_until_eof([*idle, *half, stalled], DEADLINE_S)
        assert all(received[s] == b"" for s in idle)
        assert all(received[s].startswith(b"HTTP/1.1 408") for s in half)
        assert b"201" not in received[stalled]
    finally:
        for sock in [*idle, *half, stalled]:
            sock.close()
    assert httpx.get(url + "/health", timeout=10.0).status_code == 200
    tasks = httpx.get(url + "/api/v1/tasks", timeout=10.0).json()
    assert tasks["tasks"] == []  # nothing half-sent was committed


def test_kept_alive_connection_is_closed_when_idle(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--idle-timeout", "1s")
    sock = _connect(url)
    sock.send(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    received = _read_until_eof([sock], DEADLINE_S)[sock]
    sock.close()
    assert received.startswith(b"HTTP/1.1 200")
