"""Routes under ``/api/v1/workers``, including each worker's WebSocket session."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from starlette.websockets import WebSocketDisconnect

from agentflow import wire
from agentflow.api.decoding import JSONResponse, read_model
from agentflow.api.schemas import WorkerPatchIn
from agentflow.api.service import MasterService, service
from agentflow.api.sessions import WorkerSession
from agentflow.api.views import worker_view
from agentflow.errors import AgentFlowError, NotFoundError
from agentflow.state.commands import (
    DeregisterWorker,
    RegisterWorker,
    ReportAttempts,
    SetWorkerDraining,
    TaskOutcome,
    WorkerDisconnected,
)
from agentflow.state.tasks import reserved_by

__all__ = ["router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1")

HELLO_TIMEOUT_S = 10.0


@router.get("/workers")
async def list_workers(request: Request) -> JSONResponse:
    svc = service(request)
    now = svc.now_ms()
    views = [
        worker_view(w, now, svc.scheduler.last_contact_ms(w.id), reserved_by(svc.machine, w))
        for w in sorted(svc.machine.workers.values(), key=lambda w: w.id)
    ]
    return JSONResponse({"workers": views, "departed": list(svc.machine.departed)[-100:]})


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
            reserved_by(svc.machine, worker),
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
    await ws.accept()
    try:
        hello = wire.unpack(await asyncio.wait_for(ws.receive_bytes(), HELLO_TIMEOUT_S))
        if not svc.log.is_leader:
            # Sessions live on the leader: send the worker there.
            error = svc.log.not_leader()
            await ws.send_bytes(
                wire.pack({"t": "error", "detail": error.detail, "leader_url": svc.log.leader_url})
            )
            await ws.close(code=4503)
            return
        register = _register_command(svc, worker_id, hello)
        result: dict[str, Any] = await svc.log.propose(register)
    except (TimeoutError, wire.FrameError, AgentFlowError, KeyError, TypeError) as exc:
        log.warning("worker %s refused: %s", worker_id, exc)
        with contextlib.suppress(Exception):
            await ws.send_bytes(wire.pack({"t": "error", "detail": str(exc)}))
            await ws.close(code=4400)
        return
    except WebSocketDisconnect:
        return
    session = WorkerSession(worker_id, ws)
    svc.hub.attach(session)
    svc.scheduler.touch(worker_id)
    session.send(
        {
            "t": "welcome",
            "heartbeat_interval_s": svc.config.heartbeat_interval_s,
            "protocol": wire.PROTOCOL_VERSION,
        }
    )
    for task_id, token in result["cancel"]:
        session.send({"t": "cancel", "task_id": task_id, "token": token})
    log.info("worker %s connected (%s slots)", worker_id, register.slots)
    clean = False
    try:
        async with asyncio.TaskGroup() as group:
            pump = group.create_task(session.pump())
            clean = await _receive(svc, session)
            session.close()
            await pump
    except* (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        if svc.hub.detach(session) and not svc.closing:
            with contextlib.suppress(AgentFlowError):
                await svc.log.propose(WorkerDisconnected(now_ms=svc.now_ms(), worker_id=worker_id))
        log.info("worker %s disconnected%s", worker_id, " (clean)" if clean else "")


def _register_command(svc: MasterService, worker_id: str, hello: dict[str, Any]) -> RegisterWorker:
    if hello["t"] != "hello":
        raise wire.FrameError("first frame must be hello")
    if hello.get("worker_id") != worker_id:
        raise wire.FrameError("hello worker_id does not match the session path")
    slots = int(hello["slots"])
    if not 1 <= slots <= 4096:
        raise wire.FrameError(f"slots must be 1..4096, got {slots}")
    return RegisterWorker(
        now_ms=svc.now_ms(),
        worker_id=worker_id,
        group=str(hello.get("group", "default")),
        slots=slots,
        resources={str(k): float(v) for k, v in hello.get("resources", {}).items()},
        labels={str(k): str(v) for k, v in hello.get("labels", {}).items()},
        hostname=str(hello.get("hostname", "")),
        running=[(str(t), int(tok)) for t, tok in hello.get("running", [])],
        prefetch=max(0, min(int(hello.get("prefetch", 0)), 4 * slots)),
        gpus=[
            {
                "index": int(g["index"]),
                "name": str(g["name"])[:128],
                "memory_mb": int(g["memory_mb"]),
            }
            for g in list(hello.get("gpus", []))[:64]
        ],
    )


async def _receive(svc: MasterService, session: WorkerSession) -> bool:
    """Handle the worker's frames until it leaves; True if it said bye."""
    ws, worker_id = session.ws, session.worker_id
    while not session.closed:
        try:
            frame = wire.unpack(await ws.receive_bytes())
        except wire.FrameError as exc:
            session.send({"t": "error", "detail": str(exc)})
            continue
        svc.scheduler.touch(worker_id)
        kind = frame["t"]
        if kind == "report":
            await svc.log.propose(_report_command(svc, worker_id, frame))
            session.send({"t": "ack", "seq": frame.get("seq", 0)})
        elif kind == "drain":
            await svc.log.propose(
                SetWorkerDraining(now_ms=svc.now_ms(), worker_id=worker_id, draining=True)
            )
        elif kind == "bye":
            return True
        elif kind != "heartbeat":
            session.send({"t": "error", "detail": f"unknown frame type {kind!r}"})
    return False


def _report_command(svc: MasterService, worker_id: str, frame: dict[str, Any]) -> ReportAttempts:
    outcomes = [
        TaskOutcome(
            task_id=str(o["task_id"]),
            fencing_token=int(o["token"]),
            status=str(o["status"]),
            exit_code=None if o.get("exit_code") is None else int(o["exit_code"]),
            reason=None if o.get("reason") is None else str(o["reason"])[:4096],
            result=None if o.get("result") is None else str(o["result"])[: 64 * 1024],
        )
        for o in frame.get("outcomes", [])
    ]
    return ReportAttempts(
        now_ms=svc.now_ms(),
        worker_id=worker_id,
        started=[(str(t), int(tok)) for t, tok in frame.get("started", [])],
        output=[(str(t), int(tok), str(s), bytes(d)) for t, tok, s, d in frame.get("output", [])],
        outcomes=outcomes,
    )
