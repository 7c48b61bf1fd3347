"""Worker sessions: one WebSocket per worker, msgpack frames both ways.

The hub keeps the current session of each worker and turns applied events into frames:
``TaskAssigned`` becomes ``assign`` and ``CancelRequested`` becomes ``cancel``. A worker whose
outbound queue overflows is disconnected; on reconnect its hello reconciles what it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from agentflow import wire
from agentflow.api.identity import task_token
from agentflow.state import StateMachine
from agentflow.state.events import CancelRequested, Event, TaskAssigned

__all__ = ["SessionHub", "WorkerSession"]

log = logging.getLogger(__name__)

OUTBOUND_LIMIT = 10_000
PARENT_TAIL_BYTES = 4096


class WorkerSession:
    def __init__(self, worker_id: str, ws: WebSocket) -> None:
        self.worker_id = worker_id
        self.ws = ws
        self.outbound: asyncio.Queue[bytes | None] = asyncio.Queue(OUTBOUND_LIMIT)
        self.closed = False

    def send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.outbound.put_nowait(wire.pack(frame))
        except asyncio.QueueFull:
            log.warning("worker %s is not reading; dropping its session", self.worker_id)
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(asyncio.QueueFull):
                self.outbound.put_nowait(None)

    async def pump(self) -> None:
        """Send queued frames until closed."""
        while True:
            data = await self.outbound.get()
            if data is None:
                with contextlib.suppress(Exception):
                    await self.ws.close()
                return
            try:
                await self.ws.send_bytes(data)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.closed = True
                return


class SessionHub:
    def __init__(self, machine: StateMachine, task_key: bytes | None = None) -> None:
        self._machine = machine
        self._task_key = task_key  # signs each attempt's task token; None: the API is open
        self.sessions: dict[str, WorkerSession] = {}

    def attach(self, session: WorkerSession) -> None:
        old = self.sessions.get(session.worker_id)
        if old is not None and old is not session:
            old.close()
        self.sessions[session.worker_id] = session

    def detach(self, session: WorkerSession) -> bool:
        """Forget the session; True if it was still the worker's current one."""
        session.close()
        if self.sessions.get(session.worker_id) is session:
            del self.sessions[session.worker_id]
            return True
        return False

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TaskAssigned):
                session = self.sessions.get(event.worker_id)
                if session is not None:
                    session.send(self.assign_frame(event.task_id))
            elif isinstance(event, CancelRequested):
                session = self.sessions.get(event.worker_id)
                if session is not None:
                    session.send(
                        {"t": "cancel", "task_id": event.task_id, "token": event.fencing_token}
                    )

    def assign_frame(self, task_id: str) -> dict[str, Any]:
        task = self._machine.tasks[task_id]
        attempt = task.attempts[-1]
        frame: dict[str, Any] = {
            "t": "assign",
            "task_id": task.id,
            "token": attempt.fencing_token,
            "attempt": attempt.number,
            "spec": task.spec.to_wire(),
            "timeout_s": task.timeout_s,
        }
        if self._task_key is not None:  # what the task authenticates with, instead of ours
            frame["task_token"] = task_token(self._task_key, task.id, attempt.fencing_token)
        if task.workflow_id is not None:
            frame["workflow_id"] = task.workflow_id
            frame["parents"] = [self._parent(p) for p in task.dependencies]
        return frame

    def _parent(self, task_id: str) -> dict[str, Any]:
        """What a task may read of one parent: outcome, last lines of output, its result."""
        parent = self._machine.tasks.get(task_id)
        if parent is None:
            return {"id": task_id, "status": "evicted"}
        stdout = self._machine.outputs.get(task_id, {}).get("stdout")
        tail = bytes(stdout.data[-PARENT_TAIL_BYTES:]) if stdout is not None else b""
        return {
            "id": parent.id,
            "key": parent.key,
            "status": parent.status.value,
            "exit_code": parent.exit_code,
            "stdout_tail": tail.decode("utf-8", "replace"),
            "result": parent.result,
        }

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close()
