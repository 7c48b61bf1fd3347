"""Routes under ``/api/v1/workers``, including each worker's WebSocket session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from starlette.websockets import WebSocketDisconnect

from agentflow import faults, wire, workerwire
from agentflow.api.decoding import JSONResponse, read_model
from agentflow.api.schemas import WorkerPatchIn
from agentflow.api.service import MasterService, service
from agentflow.api.sessions import (
    CLOSE_CONFLICT,
    CLOSE_PROTOCOL,
    WorkerSession,
    admit,
    held_report,
)
from agentflow.api.views import worker_view
from agentflow.errors import AgentFlowError, ConflictError, NotFoundError
from agentflow.logformat import bind
from agentflow.state.commands import (
    DeregisterWorker,
    RegisterWorker,
    SetWorkerDraining,
    WorkerDisconnected,
)

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")

HELLO_TIMEOUT_S = 10.0


@router.get("/workers")
async def list_workers(request: Request) -> JSONResponse:
    svc = service(request)
    now = svc.now_ms()
    views = [
        worker_view(w, now, svc.scheduler.last_contact_ms(w.id), svc.machine.tasks.reserved_by(w))
        for w in sorted(svc.machine.workers.values(), key=lambda w: w.id)
    ]
    return JSONResponse({"workers": views, "departed": list(svc.machine.workers.departed)[-100:]})


@router.get("/workers/{worker_id}")
async def get_worker(request: Request, worker_id: str) -> JSONResponse:
    svc = service(request)
    worker = svc.machine.workers.get(worker_id)
    if worker is None:
        raise NotFoundError(f"no worker {worker_id}", worker_id=worker_id)
    return JSONResponse(
        worker_view(
            worker,
            svc.now_ms(),
            svc.scheduler.last_contact_ms(worker_id),
            svc.machine.tasks.reserved_by(worker),
        )
    )


@router.patch("/workers/{worker_id}")
async def patch_worker(request: Request, worker_id: str) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, WorkerPatchIn, svc.config.max_request_bytes)
    draining = body.state == "draining"
    await svc.log.propose(
        SetWorkerDraining(now_ms=svc.now_ms(), worker_id=worker_id, draining=draining)
    )
    return await get_worker(request, worker_id)


@router.delete("/workers/{worker_id}")
async def delete_worker(request: Request, worker_id: str, force: bool = False) -> JSONResponse:
    svc = service(request)
    await svc.log.propose(DeregisterWorker(now_ms=svc.now_ms(), worker_id=worker_id, force=force))
    return JSONResponse({"id": worker_id, "deregistered": True})


@router.websocket("/workers/{worker_id}/session")
async def worker_session(ws: WebSocket, worker_id: str) -> None:
    svc: MasterService = ws.app.state.service
    bind(worker_id=worker_id)  # what this session logs names its worker (JSON logs)
    await ws.accept()
    try:
        hello = await _hello(ws, worker_id)
        if not svc.log.is_leader:
            # Sessions live on the leader: send the worker there.
            error = svc.log.not_leader()
            await ws.send_bytes(
                wire.pack({"t": "error", "detail": error.detail, "leader_url": svc.log.leader_url})
            )
            await ws.close(code=4503)
            return
        admission = admit(svc.machine, worker_id, hello.secret)
        register = _register_command(svc, hello, admission.secret_hash)
        result: dict[str, Any] = await svc.log.propose(register)
    except ConflictError as exc:
        await _refuse(ws, worker_id, str(exc), CLOSE_CONFLICT, _holder(svc, worker_id))
        return
    except (TimeoutError, wire.FrameError, AgentFlowError) as exc:
        await _refuse(ws, worker_id, str(exc), CLOSE_PROTOCOL)
        return
    except WebSocketDisconnect:
        return
    protocol = min(hello.protocol, wire.PROTOCOL_VERSION)  # the lower of the two versions
    session = WorkerSession(worker_id, ws, batches=protocol >= 2)
    svc.hub.attach(session)
    svc.scheduler.touch(worker_id)
    session.send(
        {
            "t": "welcome",
            "heartbeat_interval_s": svc.config.heartbeat_interval_s,
            "protocol": protocol,
            "secret": admission.secret,
            "drain": result["drain"],
        }
    )
    for task_id, token in result["cancel"]:
        session.send({"t": "cancel", "task_id": task_id, "token": token})
    # Placed on it between its registration and now (no await since attach): not yet pushed.
    svc.hub.catch_up(session, dict(hello.running))
    log.info("worker %s connected (%s slots)", worker_id, register.slots)
    clean = False
    try:
        async with asyncio.TaskGroup() as group:
            pump = group.create_task(session.pump())
            clean = await _receive(svc, session)
            session.close(session.close_code)
            await pump
    except* (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        if svc.hub.detach(session) and not svc.closing:
            with contextlib.suppress(AgentFlowError):
                await svc.log.propose(WorkerDisconnected(now_ms=svc.now_ms(), worker_id=worker_id))
        log.info("worker %s disconnected%s", worker_id, " (clean)" if clean else "")


async def _hello(ws: WebSocket, worker_id: str) -> workerwire.Hello:
    frame = workerwire.decode_worker_frame(await _next_bytes(ws, HELLO_TIMEOUT_S))
    if not isinstance(frame, workerwire.Hello):
        raise wire.FrameError("first frame must be hello")
    if frame.worker_id != worker_id:
        raise wire.FrameError("hello worker_id does not match the session path")
    if frame.protocol < wire.MIN_PROTOCOL_VERSION:
        raise wire.FrameError(
            f"worker protocol {frame.protocol} is older than this master serves"
            f" ({wire.MIN_PROTOCOL_VERSION}..{wire.PROTOCOL_VERSION}): upgrade the worker"
        )
    return frame


async def _next_bytes(ws: WebSocket, timeout_s: float | None = None) -> bytes:
    """The next binary frame; a text frame is a protocol violation."""
    message = await asyncio.wait_for(ws.receive(), timeout_s)
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    data = message.get("bytes")
    if not isinstance(data, bytes):
        raise wire.FrameError("frames are binary msgpack, not text")
    return data


async def _refuse(
    ws: WebSocket, worker_id: str, detail: str, code: int, extra: dict[str, Any] | None = None
) -> None:
    log.warning("worker %s refused: %s", worker_id, detail)
    with contextlib.suppress(Exception):
        await ws.send_bytes(wire.pack({"t": "error", "detail": detail, **(extra or {})}))
        await ws.close(code=code)


def _holder(svc: MasterService, worker_id: str) -> dict[str, Any]:
    """Who holds a refused worker id, for the refused process to decide what to do.

    ``connected``: another process has a session now; waiting cannot help. ``silent``: the
    previous holder went away (a crash, most likely) still holding attempts, and is declared
    lost within ``lost_in_s``, after which the id is free.
    """
    if worker_id in svc.hub.sessions:
        return {"holder": "connected"}
    return {
        "holder": "silent",
        "lost_in_s": svc.scheduler.lost_in_ms(worker_id) / 1000.0,
        "worker_timeout_s": svc.config.worker_loss_timeout_s,
    }


def _register_command(svc: MasterService, hello: workerwire.Hello, digest: str) -> RegisterWorker:
    return RegisterWorker(
        now_ms=svc.now_ms(),
        worker_id=hello.worker_id,
        group=hello.group,
        slots=hello.slots,
        resources=dict(hello.resources),
        labels=dict(hello.labels),
        hostname=hello.hostname,
        running=list(hello.running),
        prefetch=hello.prefetch,
        gpus=list(hello.gpus),
        secret_hash=digest,
        pickled_functions=hello.pickled_functions,
        workspaces=hello.workspaces,
    )


async def _receive(svc: MasterService, session: WorkerSession) -> bool:
    """Handle the worker's frames until it leaves; True if it said bye.

    A frame that does not decode is a protocol violation: an error frame, then the socket
    closes. A report naming an attempt the worker does not hold is refused (an error frame,
    nothing committed); the session goes on.
    """
    ws, worker_id = session.ws, session.worker_id
    while not session.closed:
        try:
            frame = workerwire.decode_worker_frame(await _next_bytes(ws))
        except wire.FrameError as exc:
            session.send({"t": "error", "detail": str(exc)})
            session.close(CLOSE_PROTOCOL)
            return False
        if svc.hub.sessions.get(worker_id) is not session:
            return False  # replaced by a newer session of the same instance
        svc.scheduler.touch(worker_id)
        try:
            if isinstance(frame, workerwire.Report):
                await _report(svc, session, frame)
            elif isinstance(frame, workerwire.Drain):
                await svc.log.propose(
                    SetWorkerDraining(
                        now_ms=svc.now_ms(), worker_id=worker_id, draining=True, by_worker=True
                    )
                )
            elif isinstance(frame, workerwire.Bye):
                return True
        except AgentFlowError as exc:  # not the leader any more, most likely
            session.send({"t": "error", "detail": exc.detail})
            session.close(1011)
            return False
    return False


async def _report(svc: MasterService, session: WorkerSession, report: workerwire.Report) -> None:
    """Commit what the report says of attempts its worker holds, then acknowledge it."""
    if faults.ARMED:
        faults.reached("before_report")  # tests only: received, not yet proposed
    try:
        command = held_report(svc.machine, session.worker_id, report, svc.now_ms())
    except ConflictError as exc:
        log.warning("worker %s: report %d refused: %s", session.worker_id, report.seq, exc)
        session.send({"t": "error", "detail": str(exc), "seq": report.seq})
        return
    if command is not None:
        await svc.log.propose(command)
    session.send({"t": "ack", "seq": report.seq})
