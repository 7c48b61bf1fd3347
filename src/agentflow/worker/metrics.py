"""A worker's ``/metrics``: a small HTTP endpoint on ``--metrics-port`` (off by default).

Served on the worker's own event loop (the collector reads the worker's state between its
steps, never from another thread). It answers ``GET /metrics`` and nothing else: one request
per connection, its head bounded and due within :data:`REQUEST_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agentflow.errors import ConfigError

if TYPE_CHECKING:
    from agentflow.worker.runtime import Worker

__all__ = ["REQUEST_TIMEOUT_S", "make_worker_registry", "serve_metrics"]

REQUEST_TIMEOUT_S = 5.0
REQUEST_HEAD_MAX = 8192


class _WorkerCollector(Collector):
    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    def collect(self) -> Iterator[Metric]:
        worker, outbox = self._worker, self._worker.outbox
        info = GaugeMetricFamily(
            "agentflow_worker_info", "This worker's id and group", labels=["worker_id", "group"]
        )
        info.add_metric([worker.config.worker_id, worker.config.group], 1)
        yield info
        yield GaugeMetricFamily("agentflow_worker_slots", "Task slots", value=worker.slots)
        yield GaugeMetricFamily(
            "agentflow_worker_running", "Attempts running on a slot", value=worker.running
        )
        yield GaugeMetricFamily(
            "agentflow_worker_connected",
            "1 while a session with a master is open",
            value=int(outbox.connected),
        )
        yield CounterMetricFamily(
            "agentflow_worker_sessions",
            "Sessions opened with a master",
            value=outbox.sessions_total,
        )
        yield CounterMetricFamily(
            "agentflow_worker_attempts_started", "Attempts started", value=outbox.started_total
        )
        finished = CounterMetricFamily(
            "agentflow_worker_attempts_finished", "Attempts finished, by outcome", labels=["status"]
        )
        for status, n in sorted(outbox.outcomes_total.items()):
            finished.add_metric([status], n)
        yield finished


def make_worker_registry(worker: Worker) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_WorkerCollector(worker))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


@contextlib.asynccontextmanager
async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> AsyncIterator[None]:
    """Serve ``registry`` on ``host:port`` while the block runs (``port`` 0: not at all)."""
    if not port:
        yield
        return

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            line = head.split(b"\r\n", 1)[0].split()
            head_only = bool(line) and line[0] == b"HEAD"
            if len(line) >= 2 and line[0] in (b"GET", b"HEAD") and line[1] == b"/metrics":
                body = generate_latest(registry)
                status, ctype = "200 OK", CONTENT_TYPE_LATEST
            else:
                body, status, ctype = b"not found\n", "404 Not Found", "text/plain"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + (b"" if head_only else body)
            )
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    try:
        server = await asyncio.start_server(answer, host, port, limit=REQUEST_HEAD_MAX)
    except OSError as exc:
        raise ConfigError(f"cannot listen for metrics on {host}:{port}: {exc.strerror}") from None
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()
