"""Finding 8: a follower refuses an oversized body at once instead of buffering it.

Before the fix, a follower read any body into memory (copying it again for every chunk) before
forwarding it to the leader, which only then refused it: a ``Content-Length`` of 1 GB held the
connection, waiting for a gigabyte.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.e2e.procs import Processes

LIMIT = 64 << 10
DEADLINE_S = 10.0

pytestmark = pytest.mark.slow  # real master and worker processes


def _follower(procs: Processes) -> tuple[str, str]:
    cluster = procs.cluster(3, "--max-request-bytes", "64K")
    leader = cluster.leader()
    follower = next(n for n in cluster.masters if n != leader)
    return cluster.url(follower), cluster.url(leader)


def _response_head(sock: socket.socket) -> bytes:
    """Bytes the server sent until its response's body is complete (or it closed)."""
    sock.settimeout(0.5)
    data = b""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        length = [
            int(line.split(b":", 1)[1])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        ]
        if sep and length and len(body) >= length[0]:
            break
    return data


def test_follower_refuses_oversized_bodies_at_once(procs: Processes) -> None:
    follower, leader = _follower(procs)
    _declared_too_large(follower)
    _nothing_committed(follower, leader)
    _streamed_too_large(follower)
    _nothing_committed(follower, leader)


def _declared_too_large(follower: str) -> None:
    """``Content-Length`` of 1 GB, then a few bytes: the 413 comes before the rest is sent."""
    parts = urlsplit(follower)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
            b'{"command": "echo '
        )
        answer = _response_head(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in head.lower()
    assert json.loads(body)["status"] == 413


def _streamed_too_large(follower: str) -> None:
    """No ``Content-Length`` (chunked): refused once what arrived passes the limit."""

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield b'{"command": "echo '
        for _ in range(4 * LIMIT // 4096):
            yield b"x" * 4096

    response = httpx.post(
        follower + "/api/v1/tasks",
        content=chunks(),
        headers={"Content-Type": "application/json"},
        timeout=DEADLINE_S,
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def _nothing_committed(*urls: str) -> None:
    for url in urls:
        assert httpx.get(url + "/health", timeout=DEADLINE_S).status_code == 200
        assert httpx.get(url + "/api/v1/tasks", timeout=DEADLINE_S).json()["tasks"] == []
