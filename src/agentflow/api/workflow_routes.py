"""Routes under ``/api/v1/workflows``: validate, submit, progress, graph, cancel, retry."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from agentflow.api.decoding import JSONResponse, read_model, read_no_body
from agentflow.api.schemas import WorkflowIn, new_task_id
from agentflow.api.service import MasterService, require_workspaces, service
from agentflow.api.views import iso
from agentflow.errors import NotFoundError, ValidationError
from agentflow.scheduler.dag import (
    Analysis,
    DagTask,
    analyse,
    check,
    remaining_critical_path_s,
)
from agentflow.state.commands import CancelWorkflow, NewTask, RetryWorkflow, SubmitWorkflow
from agentflow.state.records import TERMINAL_STATUSES, WorkflowRecord

__all__ = ["checked_dag", "dag_tasks", "router"]

router = APIRouter(prefix="/api/v1/workflows")

MAX_WAIT_S = 300.0
MAX_WORKFLOW_TASKS = 100_000


def checked_dag(body: WorkflowIn) -> Analysis:
    """The DAG's analysis, or one 422 naming every problem found."""
    dag = [
        DagTask(id=t.id, dependencies=tuple(t.dependencies), estimate_s=t.estimate_s)
        for t in body.tasks
    ]
    problems, analysis = check(dag, max_tasks=MAX_WORKFLOW_TASKS)
    if problems or analysis is None:
        raise ValidationError(
            f"workflow {body.name!r} is not a valid DAG: "
            + "; ".join(p.message for p in problems[:5])
            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""),
            errors=[
                {"kind": p.kind.value, "task_ids": list(p.task_ids), "message": p.message}
                for p in problems
            ],
        )
    return analysis


def _analysis_view(analysis: Analysis) -> dict[str, Any]:
    return {
        "tasks": analysis.task_count,
        "edges": analysis.edge_count,
        "topological_order": analysis.topological_order,
        "levels": analysis.levels,
        "max_width": analysis.max_width,
        "peak_parallelism": analysis.peak_parallelism,
        "critical_path": analysis.critical_path.task_ids,
        "critical_path_s": round(analysis.critical_path.length_s, 3),
    }


@router.post("/validate")
async def validate_workflow(request: Request) -> JSONResponse:
    """A dry run: 200 with the analysis, or 422 with every problem. Nothing is created."""
    svc = service(request)
    body = await read_model(request, WorkflowIn, svc.config.max_request_bytes)
    return JSONResponse({"valid": True, "analysis": _analysis_view(checked_dag(body))})


@router.post("", status_code=201)
async def submit_workflow(request: Request) -> JSONResponse:
    svc = service(request)
    body = await read_model(request, WorkflowIn, svc.config.max_request_bytes)
    analysis = checked_dag(body)
    tasks = dag_tasks(body, analysis, {t.id: new_task_id() for t in body.tasks})
    require_workspaces(svc, tasks)
    workflow_id = "wf-" + secrets.token_hex(8)
    result = await svc.log.propose(
        SubmitWorkflow(
            now_ms=svc.now_ms(),
            workflow_id=workflow_id,
            name=body.name,
            failure_policy=body.failure_policy,
            tasks=tasks,
            idempotency_key=body.idempotency_key,
            place=True,
        )
    )
    wf = _workflow(svc, result["workflow_id"])
    view = workflow_view(svc, wf)
    view["created"] = result["created"]
    view["analysis"] = _analysis_view(analysis)
    return JSONResponse(view, status_code=201 if result["created"] else 200)


def dag_tasks(body: WorkflowIn, analysis: Analysis, ids: dict[str, str]) -> list[NewTask]:
    """The workflow's tasks in topological order, each task id ``ids[its key]``."""
    by_key = {t.id: t.with_defaults(body.defaults) for t in body.tasks}
    tasks = []
    for key in analysis.topological_order:
        spec = by_key[key]
        new = spec.to_new_task()
        tasks.append(
            NewTask(
                **{**_fields(new), "id": ids[key], "title": spec.name or new.title or key},
                key=key,
                dependencies=[ids[d] for d in dict.fromkeys(spec.dependencies)],
                trigger=spec.trigger,
                allow_failure=spec.allow_failure,
                estimate_s=spec.estimate_s,
                noop=spec.runs_nothing,
            )
        )
    return tasks


def _fields(new: NewTask) -> dict[str, Any]:
    keep = (
        "description",
        "spec",
        "priority",
        "group",
        "timeout_s",
        "max_retries",
        "retry_backoff_s",
        "resources",
        "labels",
        "idempotency_key",
    )
    return {name: getattr(new, name) for name in keep}


def _workflow(svc: MasterService, workflow_id: str) -> WorkflowRecord:
    wf = svc.machine.workflows.get(workflow_id)
    if wf is None:
        raise NotFoundError(f"no workflow {workflow_id}", workflow_id=workflow_id)
    return wf


def _durations(svc: MasterService, wf: WorkflowRecord) -> dict[str, float]:
    """Measured seconds of finished tasks and elapsed seconds of running ones, by key."""
    now = svc.now_ms()
    out: dict[str, float] = {}
    for task_id in wf.task_ids:
        task = svc.machine.tasks.peek(task_id)
        if task is None or task.key is None or task.started_at is None:
            continue
        end = task.finished_at or now
        out[task.key] = max(0.0, (end - task.started_at) / 1000.0)
    return out


def workflow_view(svc: MasterService, wf: WorkflowRecord, *, tasks: bool = True) -> dict[str, Any]:
    records = [svc.machine.tasks.peek(t) for t in wf.task_ids]
    counts: dict[str, int] = {}
    for task in records:
        status = task.status.value if task is not None else "evicted"
        counts[status] = counts.get(status, 0) + 1
    finished = sum(1 for t in records if t is None or t.status in TERMINAL_STATUSES)
    now = svc.now_ms()
    view: dict[str, Any] = {
        "id": wf.id,
        "name": wf.name,
        "status": wf.status.value,
        "failure_policy": wf.failure_policy,
        "runs": wf.runs,
        "created_at": iso(wf.created_at),
        "finished_at": iso(wf.finished_at),
        "elapsed_s": round(((wf.finished_at or now) - wf.created_at) / 1000.0, 3),
        "total": len(records),
        "counts": counts,
        "percent_done": round(100.0 * finished / max(1, len(records)), 1),
        "eta_s": None,
    }
    if wf.finished_at is None:
        view["eta_s"] = round(_eta_s(svc, wf, records), 3)
    if tasks:
        key_of = {t.id: t.key for t in records if t is not None}
        view["tasks"] = [
            {
                "key": t.key,
                "id": t.id,
                "title": t.title,
                "status": t.status.value,
                "exit_code": t.exit_code,
                "reason": t.reason,
                "attempts": len(t.attempts),
                "dependencies": [key_of.get(d, d) for d in t.dependencies],
                "trigger": t.trigger,
                "started_at": iso(t.started_at),
                "finished_at": iso(t.finished_at),
            }
            for t in records
            if t is not None
        ]
    return view


def _eta_s(svc: MasterService, wf: WorkflowRecord, records: list[Any]) -> float:
    """The remaining critical path: measured durations where known, estimates elsewhere."""
    present = [t for t in records if t is not None]
    key_of = {t.id: t.key or t.id for t in present}
    dag = [
        DagTask(
            id=key_of[t.id],
            dependencies=tuple(key_of[d] for d in t.dependencies if d in key_of),
            estimate_s=t.estimate_s,
        )
        for t in present
    ]
    done = {key_of[t.id] for t in present if t.status in TERMINAL_STATUSES}
    # A running task counts for what is left of its estimate, not for what it has used.
    elapsed = _durations(svc, wf)
    left = {
        key_of[t.id]: max(
            0.0,
            (t.estimate_s if t.estimate_s is not None else 1.0) - elapsed.get(key_of[t.id], 0.0),
        )
        for t in present
        if t.status not in TERMINAL_STATUSES and key_of[t.id] in elapsed
    }
    return remaining_critical_path_s(dag, done, left)


@router.get("")
async def list_workflows(
    request: Request, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> JSONResponse:
    svc = service(request)
    newest = list(svc.machine.workflows.values())[-limit:][::-1]
    return JSONResponse({"workflows": [workflow_view(svc, wf, tasks=False) for wf in newest]})


@router.get("/{workflow_id}")
async def get_workflow(
    request: Request,
    workflow_id: str,
    wait_s: Annotated[float, Query(ge=0, le=MAX_WAIT_S)] = 0.0,
) -> JSONResponse:
    """Progress; with ``wait_s``, answered when the workflow finishes or the wait runs out."""
    svc = service(request)
    _workflow(svc, workflow_id)
    wf = await svc.wait_workflow(workflow_id, wait_s)
    return JSONResponse(workflow_view(svc, wf))


@router.get("/{workflow_id}/graph")
async def workflow_graph(request: Request, workflow_id: str) -> JSONResponse:
    """The DAG with each task's state, analysed with measured durations where known."""
    svc = service(request)
    wf = _workflow(svc, workflow_id)
    records = [t for t in map(svc.machine.tasks.peek, wf.task_ids) if t is not None]
    key_of = {t.id: t.key or t.id for t in records}
    dag = [
        DagTask(
            id=key_of[t.id],
            dependencies=tuple(key_of[d] for d in t.dependencies if d in key_of),
            estimate_s=t.estimate_s,
        )
        for t in records
    ]
    analysis = analyse(dag, durations=_durations(svc, wf))
    nodes = [
        {
            "key": key_of[t.id],
            "id": t.id,
            "status": t.status.value,
            "dependencies": [key_of[d] for d in t.dependencies if d in key_of],
        }
        for t in records
    ]
    return JSONResponse(
        {
            "id": wf.id,
            "name": wf.name,
            "status": wf.status.value,
            "nodes": nodes,
            "analysis": _analysis_view(analysis),
        }
    )


@router.post("/{workflow_id}/cancel")
async def cancel_workflow(request: Request, workflow_id: str) -> JSONResponse:
    svc = service(request)
    await read_no_body(request, svc.config.max_request_bytes)
    _workflow(svc, workflow_id)
    await svc.log.propose(CancelWorkflow(now_ms=svc.now_ms(), workflow_id=workflow_id))
    return JSONResponse(workflow_view(svc, _workflow(svc, workflow_id)))


@router.post("/{workflow_id}/retry")
async def retry_workflow(request: Request, workflow_id: str) -> JSONResponse:
    """Re-run the failed tasks and everything downstream of them; keep what succeeded."""
    svc = service(request)
    await read_no_body(request, svc.config.max_request_bytes)
    _workflow(svc, workflow_id)
    reset = await svc.log.propose(RetryWorkflow(now_ms=svc.now_ms(), workflow_id=workflow_id))
    view = workflow_view(svc, _workflow(svc, workflow_id))
    view["retried_tasks"] = reset
    return JSONResponse(view)
