"""A raw worker session for the security tests: msgpack frames over a plain WebSocket.

The frame shapes are those of :mod:`agentflow.wire` (what ``agentflow-worker`` sends); the test
controls every field, as an attacker holding a token would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgpack
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from agentflow import wire


def session_url(url: str, worker_id: str) -> str:
    return url.replace("http://", "ws://", 1) + f"/api/v1/workers/{worker_id}/session"


def open_session(url: str, worker_id: str, **hello: Any) -> tuple[ClientConnection, dict[str, Any]]:
    """Connect, say hello (one slot unless told), return the socket and the master's answer."""
    ws = connect(
        session_url(url, worker_id),
        max_size=wire.MAX_FRAME_BYTES,
        compression=None,
        proxy=None,
        open_timeout=10,
        close_timeout=5,
    ).__enter__()  # a plain connection, closed by the test (or by the master)
    ws.send(wire.pack({"t": "hello", "worker_id": worker_id, "slots": 1, **hello}))
    first = recv(ws)
    assert first is not None, "the master closed the session without a word"
    return ws, first


def recv(ws: ClientConnection, timeout_s: float = 10.0) -> dict[str, Any] | None:
    """The next frame, or None once the master closed the socket."""
    try:
        raw = ws.recv(timeout=timeout_s)
    except ConnectionClosed:
        return None
    assert isinstance(raw, bytes)
    frame: dict[str, Any] = msgpack.unpackb(raw)
    return frame


def recv_kind(ws: ClientConnection, kind: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """Skip frames until one of ``kind`` (heartbeat-free: the master sends none unasked)."""
    while True:
        frame = recv(ws, timeout_s)
        assert frame is not None, f"closed while waiting for {kind}"
        if frame["t"] == kind:
            return frame


def until_closed(ws: ClientConnection, timeout_s: float = 10.0) -> tuple[list[dict[str, Any]], int]:
    """Every frame the master sends until it closes, and its close code."""
    frames: list[dict[str, Any]] = []
    while True:
        try:
            raw = ws.recv(timeout=timeout_s)
        except ConnectionClosed as exc:
            return frames, exc.rcvd.code if exc.rcvd is not None else -1
        assert isinstance(raw, bytes)
        frames.append(msgpack.unpackb(raw))


def report(seq: int = 1, **fields: Any) -> bytes:
    return wire.pack({"t": "report", "seq": seq, **fields})


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def tree_bytes(root: Path) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(root) for f in files)
