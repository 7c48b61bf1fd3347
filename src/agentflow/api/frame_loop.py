"""The socket loop of the by-ref socket routes (``WS /api/v1/submit``, ``WS /api/v1/locks``):
read client frames, run each on its own, answer each by its ``ref``.

Each frame is decoded strictly (:func:`agentflow.api.decoding.receive_frame_text`); one that
cannot be taken is refused (by its ref when it has one) and the socket goes on, unless the
refusal closes it. Frames run concurrently, at most :attr:`FrameBounds.running_max` at once
(and, where bounded, :attr:`FrameBounds.held_bytes_max` bytes of them): beyond, the reading
waits, and TCP slows the client. Every frame is answered, ``{"ref": r} | answer`` or
``{"ref": r, "error": {problem}}``, even when its handling breaks. When the client leaves,
:attr:`FrameLoop.closed` is set and the frames in progress are let finish (what was sent is
done; only the answers have nowhere to go).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from agentflow.api.decoding import FrameError, receive_frame_text, refuse_frame, send_frame
from agentflow.api.request_metrics import frame_histogram
from agentflow.errors import AgentFlowError

__all__ = ["FrameBounds", "FrameLoop", "Run"]

log = logging.getLogger(__name__)

Run = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]
"""What one frame does: given the frame and its text, the answer (without its ref)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameBounds:
    """How much of one socket is in progress at once."""

    running_max: int  # frames in progress; the reading waits beyond
    frame_bytes_max: int | None = None  # a larger frame is refused with 413 (None: no bound)
    held_bytes_max: int | None = None  # bytes of the frames in progress (None: no bound)


def _same_ref(ref: Any) -> Any:
    return ref


class FrameLoop:
    """One socket's frames, each run by ``run`` and answered by its ref. ``name`` says which
    socket in the log; ``failure`` is the problem's detail when a frame's handling breaks;
    ``ref_of`` the ref to answer with, from the one the frame carried."""

    def __init__(
        self,
        ws: WebSocket,
        *,
        name: str,
        failure: str,
        bounds: FrameBounds,
        ref_of: Callable[[Any], Any] = _same_ref,
    ) -> None:
        self.ws = ws
        self.name = name
        self.failure = failure
        self.bounds = bounds
        self.ref_of = ref_of
        self.closed = asyncio.Event()
        self._timing = frame_histogram(ws)  # each frame's seconds, for /metrics

    async def gone(self) -> bool:
        """Whether the client has left (for frames that wait, to stop waiting)."""
        return self.closed.is_set()

    async def serve(self, run: Run) -> None:
        """Until the client leaves (or a refusal closes the socket)."""
        running: dict[asyncio.Task[None], int] = {}  # each frame in progress and its size
        try:
            while True:
                try:
                    frame, text = await receive_frame_text(self.ws, self.bounds.frame_bytes_max)
                except FrameError as exc:  # answered by its ref when it has one
                    if await refuse_frame(self.ws, exc):
                        break
                    continue
                while running and self._full(running, len(text)):
                    await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                task = asyncio.create_task(self._answer(run, frame, text))
                running[task] = len(text)
                task.add_done_callback(running.pop)
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.closed.set()  # frames that wait see it and stop
            if running:
                await asyncio.gather(*running, return_exceptions=True)

    def _full(self, running: dict[asyncio.Task[None], int], size: int) -> bool:
        if len(running) >= self.bounds.running_max:
            return True
        held = self.bounds.held_bytes_max
        return held is not None and sum(running.values()) + size > held

    async def _answer(self, run: Run, frame: dict[str, Any], text: str) -> None:
        ref = frame.get("ref")
        started = time.perf_counter()
        try:
            answer = await run(frame, text)
        except AgentFlowError as exc:
            answer = {"error": exc.to_problem()}
        except Exception:  # every frame is answered, even when its handling breaks
            log.exception("%s: frame %r failed", self.name, ref)
            answer = {"error": AgentFlowError(self.failure).to_problem()}
        if self._timing is not None:
            self._timing.observe(time.perf_counter() - started)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await send_frame(self.ws, {"ref": self.ref_of(ref)} | answer)
