"""Worker sessions: one WebSocket per worker, msgpack frames both ways.

The hub keeps the current session of each worker and turns applied events into frames:
``TaskAssigned`` becomes ``assign``, ``CancelRequested`` becomes ``cancel`` and
``AttemptWithdrawn`` becomes ``withdraw``. A worker whose
outbound queue overflows is disconnected; on reconnect its hello reconciles what it runs.

A worker id has one live instance: the first hello registers it and is given a session secret
(only its hash is kept, in the replicated worker record, so a worker resumes on a new leader
too). A later hello for that id must present the secret, unless the id holds nothing any more
(see :meth:`agentflow.state.workertable.WorkerTable.admits`). A report names only attempts
its worker holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from agentflow import faults, wire
from agentflow.api.identity import task_token
from agentflow.errors import ConflictError
from agentflow.state import StateMachine, TaskRecord
from agentflow.state.commands import ReportAttempts, TaskOutcome
from agentflow.state.events import (
    AttemptWithdrawn,
    CancelRequested,
    Event,
    TaskAssigned,
    WorkerChanged,
)
from agentflow.state.records import WorkerState
from agentflow.workerwire import Report

__all__ = [
    "Admission",
    "SessionHub",
    "WorkerSession",
    "admit",
    "held_report",
    "secret_hash",
]

log = logging.getLogger(__name__)

OUTBOUND_LIMIT = 10_000
PARENT_TAIL_BYTES = 4096


CLOSE_PROTOCOL = 4400  # a frame that does not decode, or a first frame that is not a hello
CLOSE_CONFLICT = 4409  # the worker id is held by another instance, or this session was replaced
CLOSE_LOST = 4410  # the worker was declared lost (silent past the timeout): register again
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Admission:
    secret: str  # told to the worker in its welcome
    secret_hash: str  # kept in the worker record


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def admit(machine: StateMachine, worker_id: str, presented: str | None) -> Admission:
    """The secret a hello resumes with, or a fresh one; :class:`ConflictError` otherwise."""
    worker = machine.workers.get(worker_id)
    if presented is not None and worker is not None and worker.secret_hash:
        digest = secret_hash(presented)
        if hmac.compare_digest(digest, worker.secret_hash):
            return Admission(presented, digest)
    fresh = secrets.token_urlsafe(SECRET_BYTES)
    admission = Admission(fresh, secret_hash(fresh))
    if not machine.workers.admits(worker_id, admission.secret_hash):
        raise ConflictError(
            f"worker id {worker_id} is held by another live instance; only that instance "
            "(with its session secret) may resume it, until it is declared lost",
            worker_id=worker_id,
        )
    return admission


def held_report(
    machine: StateMachine, worker_id: str, report: Report, now_ms: int
) -> ReportAttempts | None:
    """The command a report becomes: only what the worker holds, None if nothing is left.

    An attempt the worker holds is looked up once. One it held before (superseded, or its task
    since evicted) is dropped quietly, as applying it would; one it never held refuses the
    whole report with :class:`ConflictError`.
    """
    worker = machine.workers.get(worker_id)
    if worker is None:
        raise ConflictError(f"worker {worker_id} is not registered", worker_id=worker_id)
    running = worker.running

    def keep(task_id: str, token: int) -> bool:
        if running.get(task_id) == token:
            return True
        task = machine.tasks.peek(task_id)
        if task is None or any(
            a.fencing_token == token and a.worker_id == worker_id for a in task.attempts
        ):
            return False
        raise ConflictError(
            f"attempt {token} of task {task_id} is not held by worker {worker_id}",
            task_id=task_id,
        )

    started = [(t, tok) for t, tok in report.started if keep(t, tok)]
    output: list[tuple[str, int, str, bytes]] = [
        (t, tok, s, d) for t, tok, s, d in report.output if keep(t, tok)
    ]
    outcomes = [
        TaskOutcome(
            task_id=o.task_id,
            fencing_token=o.token,
            status=o.status,
            exit_code=o.exit_code,
            reason=o.reason,
            result=o.result,
            workspace=o.workspace,
        )
        for o in report.outcomes
        if keep(o.task_id, o.token)
    ]
    bases = [(t, tok, sha) for t, tok, sha in report.bases if keep(t, tok)]
    if not (started or output or outcomes or bases):
        return None
    return ReportAttempts(
        now_ms=now_ms,
        worker_id=worker_id,
        started=started,
        output=output,
        outcomes=outcomes,
        place=bool(outcomes),  # an outcome frees room: fill it in this same entry
        bases=bases,
    )


class WorkerSession:
    def __init__(self, worker_id: str, ws: WebSocket, *, batches: bool = False) -> None:
        self.worker_id = worker_id
        self.ws = ws
        self.batches = batches  # it takes many assignments in one "assigns" frame
        self.outbound: asyncio.Queue[bytes | None] = asyncio.Queue(OUTBOUND_LIMIT)
        self.closed = False
        self.close_code = 1000

    def send(self, frame: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.outbound.put_nowait(wire.pack(frame))
        except asyncio.QueueFull:
            log.warning("worker %s is not reading; dropping its session", self.worker_id)
            self.close()

    def close(self, code: int = 1000) -> None:
        """Close once the frames queued before are sent (an error frame, say)."""
        if not self.closed:
            self.closed = True
            self.close_code = code
            with contextlib.suppress(asyncio.QueueFull):
                self.outbound.put_nowait(None)

    async def pump(self) -> None:
        """Send queued frames until closed."""
        while True:
            data = await self.outbound.get()
            if data is None:
                with contextlib.suppress(Exception):
                    await self.ws.close(code=self.close_code)
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
            old.send({"t": "error", "detail": "replaced by a newer session of this worker"})
            old.close(CLOSE_CONFLICT)
        self.sessions[session.worker_id] = session

    def catch_up(self, session: WorkerSession, held: dict[str, int]) -> None:
        """Push what the state gives the worker beyond ``held`` (what its hello said it runs).

        Registering requeued everything else the worker had, so these are the attempts placed
        on it after its registration applied and before this session was attached (a submit
        placed inline, a scheduling pass): their pushes found no session. Called right after
        :meth:`attach`, with no await between, so nothing is pushed twice."""
        worker = self._machine.workers.get(session.worker_id)
        if worker is None:
            return
        missed = [
            task
            for task_id, token in worker.running.items()
            if held.get(task_id) != token
            and (task := self._machine.tasks.peek(task_id)) is not None
            and task.fencing_token == token
        ]
        self._flush(session, [self.assign_frame(task) for task in missed])

    def detach(self, session: WorkerSession) -> bool:
        """Forget the session; True if it was still the worker's current one."""
        session.close()
        if self.sessions.get(session.worker_id) is session:
            del self.sessions[session.worker_id]
            return True
        return False

    def on_events(self, events: list[Event]) -> None:
        """Push what the applied entries gave or took from each worker, in log order per
        worker; a worker that speaks protocol 2 gets its assignments in one frame."""
        pending: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            if isinstance(event, TaskAssigned):
                if faults.ARMED:
                    faults.reached("before_push")  # tests only: applied, not yet pushed
                task = self._machine.tasks.peek(event.task_id)
                if task is None or task.fencing_token != event.fencing_token:
                    continue  # superseded within this batch: a later event says where it went
                if event.worker_id in self.sessions:
                    pending.setdefault(event.worker_id, []).append(self.assign_frame(task))
            elif isinstance(event, CancelRequested | AttemptWithdrawn):
                session = self.sessions.get(event.worker_id)
                if session is not None:
                    self._flush(session, pending.pop(event.worker_id, []))
                    kind = "cancel" if isinstance(event, CancelRequested) else "withdraw"
                    session.send(
                        {"t": kind, "task_id": event.task_id, "token": event.fencing_token}
                    )
            elif isinstance(event, WorkerChanged) and event.state == WorkerState.LOST.value:
                pending.pop(event.worker_id, None)
                self._end_lost(event.worker_id)
        for worker_id, frames in pending.items():
            if worker_id in self.sessions:
                self._flush(self.sessions[worker_id], frames)

    def _end_lost(self, worker_id: str) -> None:
        """Close the session of a worker declared lost. Its connection may have outlived the
        silence (a partition, a pause: TCP kept the bytes), and a lost worker is given
        nothing: it must register again, which also tells it which attempts to drop."""
        session = self.sessions.pop(worker_id, None)
        if session is not None:
            session.send({"t": "error", "detail": "declared lost (silent too long): reconnect"})
            session.close(CLOSE_LOST)

    @staticmethod
    def _flush(session: WorkerSession, frames: list[dict[str, Any]]) -> None:
        if len(frames) > 1 and session.batches:
            session.send({"t": "assigns", "frames": frames})
        else:
            for frame in frames:
                session.send(frame)

    def assign_frame(self, task: TaskRecord) -> dict[str, Any]:
        attempt = task.attempts[-1]
        frame: dict[str, Any] = {
            "t": "assign",
            "task_id": task.id,
            "token": attempt.fencing_token,
            "attempt": attempt.number,
            "spec": task.spec.to_wire(),
            "timeout_s": task.timeout_s,
            # The worker starts what it holds queued in this order (smaller first), as the
            # master would: the ready queue's static key.
            "order": self._machine.policy.static_key(task.priority, task.enqueued_at, task.retries),
        }
        if self._task_key is not None:  # what the task authenticates with, instead of ours
            frame["task_token"] = task_token(self._task_key, task.id, attempt.fencing_token)
        if task.workflow_id is not None:
            frame["workflow_id"] = task.workflow_id
            frame["parents"] = [self._parent(p) for p in task.dependencies]
        if (base := task.workspace_base) is not None:  # a retry starts where the first did
            frame["workspace_base"] = base
        return frame

    def _parent(self, task_id: str) -> dict[str, Any]:
        """What a task may read of one parent: outcome, last lines of output, its result."""
        parent = self._machine.tasks.peek(task_id)
        if parent is None:
            return {"id": task_id, "status": "evicted"}
        stdout = self._machine.outputs.get(task_id, {}).get("stdout")
        tail = bytes(stdout.data[-PARENT_TAIL_BYTES:]) if stdout is not None else b""
        view: dict[str, Any] = {
            "id": parent.id,
            "key": parent.key,
            "status": parent.status.value,
            "exit_code": parent.exit_code,
            "stdout_tail": tail.decode("utf-8", "replace"),
            "result": parent.result,
            "result_format": parent.spec.result_format,
        }
        if (workspace := parent.workspace_result) is not None:  # its WorkspaceResult wire
            view["workspace"] = workspace
        return view

    def close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close()
