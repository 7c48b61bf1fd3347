"""Free ports for processes that tests and benchmarks start on 127.0.0.1."""

from __future__ import annotations

import random
import socket
from pathlib import Path

__all__ = ["free_port"]

_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A free port below the kernel's ephemeral range.

    A port from ``bind(0)`` is free only until someone takes it: every client connection the
    tests open gets an ephemeral port from the same range, and one of them could take a
    master's port between this check and the master's own bind. Below the range, only a
    listener can, and none but ours run here. Never the same port twice in one session."""
    low = max(1025, min(_ephemeral_low(), 65536) - 20000)
    high = max(low + 1000, _ephemeral_low() - 1)
    for _ in range(200):
        port = random.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # crowded: fall back to the kernel's choice
        s.bind(("127.0.0.1", 0))
        fallback: int = s.getsockname()[1]
        return fallback
