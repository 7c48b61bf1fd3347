"""What a worker has to tell the master: starts, output and outcomes, sent in batched reports.

Starts and output wait a short window (``report_interval_s``) so that a quick task's start
travels in the same frame, and the same log entry, as its outcome; an outcome goes at once.
An outcome stays unacknowledged, keyed by the report's ``seq``, until the master acknowledges
the report that carried it; a new session sends every unacknowledged outcome again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from agentflow import wire, workerwire
from agentflow.worker.executor import Finished

__all__ = ["MAX_BUFFERED_OUTPUT", "Outbox"]

MAX_BUFFERED_OUTPUT = workerwire.MAX_REPORT_OUTPUT_BYTES  # all of it travels in one report


class Outbox:
    """The reports not yet sent and the outcomes not yet acknowledged."""

    def __init__(self, interval_s: float, connection: Callable[[], ClientConnection | None]):
        self._interval_s = interval_s
        self._connection = connection  # the current session's socket, if any
        self._started: list[tuple[str, int]] = []
        self._output: list[tuple[str, int, str, bytes]] = []
        self._output_bytes = 0
        self._outcomes: list[dict[str, Any]] = []
        self._bases: list[tuple[str, int, str]] = []  # workspace bases resolved (design 19)
        self._unacked: dict[int, list[dict[str, Any]]] = {}
        self._seq = 0
        self._wake = asyncio.Event()
        self._outcome_ready = asyncio.Event()
        # Counts for the worker's /metrics (agentflow.worker.metrics).
        self.started_total = 0
        self.outcomes_total: dict[str, int] = {}  # by status
        self.sessions_total = 0

    @property
    def connected(self) -> bool:
        return self._connection() is not None

    @property
    def settled(self) -> bool:
        """Every outcome sent and acknowledged."""
        return not self._unacked and not self._outcomes

    def pending_outcomes(self) -> list[dict[str, Any]]:
        """Outcomes the master has not acknowledged, sent or not, oldest first."""
        return [o for batch in self._unacked.values() for o in batch] + self._outcomes

    def started(self, task_id: str, token: int) -> None:
        self._started.append((task_id, token))
        self.started_total += 1
        self._wake.set()

    def based(self, task_id: str, token: int, sha: str) -> None:
        """A workspace attempt's base commit, so that a retry starts from the same one."""
        self._bases.append((task_id, token, sha))
        self._wake.set()

    def output(self, task_id: str, token: int, stream: str, data: bytes) -> None:
        if self._output_bytes + len(data) > MAX_BUFFERED_OUTPUT:
            return  # the master is unreachable and the buffer is full: keep the newest later
        step = workerwire.MAX_OUTPUT_CHUNK_BYTES
        for start in range(0, len(data), step):
            self._output.append((task_id, token, stream, data[start : start + step]))
        self._output_bytes += len(data)
        self._wake.set()

    def outcome(self, task_id: str, token: int, finished: Finished, result: str | None) -> None:
        reason = finished.reason
        self.outcomes_total[finished.status] = self.outcomes_total.get(finished.status, 0) + 1
        outcome = {
            "task_id": task_id,
            "token": token,
            "status": finished.status,
            "exit_code": finished.exit_code,
            "reason": None if reason is None else reason[: workerwire.MAX_REASON_CHARS],
            "result": None if result is None else result[: workerwire.MAX_RESULT_CHARS],
        }
        if finished.workspace is not None:  # left off otherwise: old masters read the frame
            outcome["workspace"] = finished.workspace
        self._outcomes.append(outcome)
        self._wake.set()
        self._outcome_ready.set()

    def acked(self, seq: int) -> None:
        self._unacked.pop(seq, None)

    def reconnected(self) -> None:
        """A new session: every unacknowledged outcome goes again, and what piled up while no
        master was reachable goes now (nothing else may wake the reporter)."""
        self.sessions_total += 1
        outcomes = [o for batch in self._unacked.values() for o in batch]
        self._unacked.clear()
        self._outcomes = outcomes + self._outcomes
        if self._outcomes or self._started or self._output or self._bases:
            self._wake.set()
            self._outcome_ready.set()

    async def run(self) -> None:
        """Send reports, for as long as the worker runs."""
        while True:
            await self._wake.wait()
            if not self._outcomes:
                # Only starts or output: wait a little, so that a quick task's start travels
                # in the same frame (and the same log entry) as its outcome.
                with contextlib.suppress(TimeoutError):  # not wait_for: it can swallow a cancel
                    async with asyncio.timeout(self._interval_s):
                        await self._outcome_ready.wait()
            self._wake.clear()
            self._outcome_ready.clear()
            ws = self._connection()
            if ws is None or not (self._started or self._output or self._outcomes or self._bases):
                continue
            self._seq += 1
            frame = {
                "t": "report",
                "seq": self._seq,
                "started": self._started,
                "output": self._output,
                "outcomes": self._outcomes,
            }
            if self._bases:  # left off otherwise, so frames stay as old masters read them
                frame["bases"] = [list(b) for b in self._bases]
            self._unacked[self._seq] = self._outcomes
            self._started, self._output, self._outcomes, self._bases = [], [], [], []
            self._output_bytes = 0
            # On failure the outcomes stay unacked and the next session resends them.
            with contextlib.suppress(OSError, WebSocketException):
                await ws.send(wire.pack(frame))
