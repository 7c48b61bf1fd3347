"""A minimal HTTP/1.1 client for load generators, and this process's CPU time.

:class:`RawConnection` is one kept-alive connection speaking just enough HTTP for the
benchmarks (``write_throughput.py``, ``locks.py``, ``messages.py``): tens of microseconds of
CPU a request. ``httpx.AsyncClient`` spends about 1.5 ms of CPU a request here, and milliseconds
once tens of requests share a pool (encode/httpx#3215); on a 2-core machine it, not the
cluster, was the limit (92 requests/s at 64 concurrent, 87% of a core).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
from typing import Any

__all__ = ["RawConnection", "cpu_s"]


def cpu_s() -> float:
    """CPU seconds (user + system) this process has spent so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class RawConnection:
    """One kept-alive HTTP/1.1 connection to ``url`` (``http://host:port``).

    It connects on the first request, or on :meth:`connect` (to open it before a clock
    starts). :meth:`request` sends a JSON body; :meth:`send` sends a request already encoded
    with :meth:`encode`, for a load generator that repeats the same one. Answers must carry a
    ``Content-Length`` (or no body): a chunked answer is an error."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open the connection unless it is open."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self.reader, self.writer

    def encode(self, method: str, path: str, payload: bytes | None = None) -> bytes:
        """The request's bytes; a ``payload`` goes as ``application/json``."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        if payload is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        return head.encode() + b"\r\n" + (payload or b"")

    async def request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        """(status, body) of the answer to ``method path`` with ``body`` as JSON."""
        payload = None if body is None else json.dumps(body).encode()
        return await self.send(self.encode(method, path, payload))

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """(status, body) of the answer to ``request``, as :meth:`encode` made it."""
        reader, writer = self.reader, self.writer
        if reader is None or writer is None:
            reader, writer = await self.connect()
        writer.write(request)
        answer = await reader.readuntil(b"\r\n\r\n")
        status = int(answer[9:12])
        length = 0
        for line in answer.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                what = request.partition(b" HTTP/1.1\r\n")[0].decode(errors="replace")
                raise RuntimeError(f"{what}: unexpected transfer-encoding {value!r}")
        return status, (await reader.readexactly(length) if length else b"")

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
