"""JSON views of records, as the API returns them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agentflow.state import StateMachine, TaskRecord, TaskStatus, WorkerRecord
from agentflow.state.locks import Grant, Waiting
from agentflow.state.messages import AgentBox, Message

__all__ = [
    "agent_view",
    "grant_view",
    "iso",
    "lock_view",
    "message_view",
    "task_view",
    "worker_view",
]


def iso(ms: int | None) -> str | None:
    if ms is None or ms == 0:
        return None
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC).isoformat(timespec="milliseconds")


def task_view(sm: StateMachine, task: TaskRecord, now_ms: int) -> dict[str, Any]:
    spec = task.spec
    view: dict[str, Any] = {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "status": task.status.value,
        "priority": task.priority.value,
        "group": task.group,
        "command": spec.command,
        "args": spec.args,
        "agent": spec.agent,
        "function": spec.function,
        "pickled_chars": None if spec.pickled is None else len(spec.pickled),  # never the bytes
        "workspace": spec.workspace,  # WorkspaceSpec wire (gitspec), or None
        "merge": spec.merge,  # a merge step's parent keys
        "workspace_result": task.workspace_result,  # the last attempt's WorkspaceResult wire
        "attempts": len(task.attempts),
        "retries": task.retries,
        "max_retries": task.max_retries,
        "timeout_s": task.timeout_s,
        "exit_code": task.exit_code,
        "reason": task.reason,
        "worker_id": task.worker_id,
        "fencing_token": task.fencing_token,
        "resources": task.resources,
        "labels": task.labels,
        "idempotency_key": task.idempotency_key,
        "workflow_id": task.workflow_id,
        "key": task.key,
        "dependencies": task.dependencies,
        "result": task.result,
        "result_format": spec.result_format,
        "unschedulable": task.unschedulable,
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "finished_at": iso(task.finished_at),
        "retry_at": iso(task.not_before) if task.status is TaskStatus.QUEUED else None,
        "attempt_history": [
            {
                "attempt": a.number,
                "worker_id": a.worker_id,
                "fencing_token": a.fencing_token,
                "status": a.status,
                "exit_code": a.exit_code,
                "reason": a.reason,
                "assigned_at": iso(a.assigned_at),
                "started_at": iso(a.started_at),
                "finished_at": iso(a.finished_at),
                "workspace": a.workspace,
            }
            for a in task.attempts
        ],
    }
    if task.status is TaskStatus.QUEUED:
        view["effective_priority"] = round(
            sm.policy.effective(task.priority, task.enqueued_at, task.retries, now_ms), 1
        )
    return view


def worker_view(
    worker: WorkerRecord,
    now_ms: int,
    last_contact_ms: int | None,
    reserved: dict[str, float] | None = None,
) -> dict[str, Any]:
    heard = max(worker.last_seen_at, last_contact_ms or 0)
    reserved = reserved or {}
    free = {k: round(v - reserved.get(k, 0.0), 3) for k, v in worker.resources.items()}
    return {
        "reserved": reserved,
        "free": free,
        "id": worker.id,
        "state": worker.state.value,
        "drained_by": worker.drain.value if worker.draining else None,
        "group": worker.group,
        "hostname": worker.hostname,
        "slots": worker.slots,
        "free_slots": worker.free_slots,
        "prefetch": worker.prefetch,  # as the worker asked: -1 lets the master size its queue
        "queue_depth": worker.queue_depth,  # attempts it holds queued beyond its slots now
        "gpus": worker.gpus,
        "running": sorted(worker.running),
        "load": round(len(worker.running) / worker.capacity, 3) if worker.capacity else 1.0,
        "resources": worker.resources,
        "labels": worker.labels,
        "pickled_functions": worker.pickled_functions,
        "workspaces": worker.workspaces,
        "completed": worker.completed,
        "failed": worker.failed,
        "registered_at": iso(worker.registered_at),
        "last_heartbeat_age_s": round(max(0, now_ms - heard) / 1000.0, 3) if heard else None,
        "lost_at": iso(worker.lost_at),
    }


def grant_view(sm: StateMachine, grant: Grant, now_ms: int) -> dict[str, Any]:
    return {
        "name": grant.name,
        "session": grant.session,
        "owner": grant.owner,
        "token": grant.token,
        "mode": grant.mode.value,
        "limit": sm.locks.limit(grant.name) or 1,
        "ttl_s": grant.ttl_ms / 1000.0,
        "expires_at": iso(grant.expiry_ms),
        "expires_in_s": round(max(0, grant.expiry_ms - now_ms) / 1000.0, 3),
        "metadata": grant.metadata,
    }


def _waiter_view(w: Waiting, now_ms: int) -> dict[str, Any]:
    return {
        "session": w.session,
        "owner": w.owner,
        "mode": w.mode.value,
        "waiting_s": round(max(0, now_ms - w.since_ms) / 1000.0, 3),
        "gives_up_in_s": None
        if w.deadline_ms is None
        else round(max(0, w.deadline_ms - now_ms) / 1000.0, 3),
        "metadata": w.metadata,
    }


def lock_view(sm: StateMachine, name: str, now_ms: int, *, history: bool) -> dict[str, Any]:
    table = sm.locks
    holders = table.holders(name)
    view: dict[str, Any] = {
        "name": name,
        "held": bool(holders),
        "limit": table.limit(name) or 1,
        "holders": [grant_view(sm, g, now_ms) for g in holders],
        "waiters": [_waiter_view(w, now_ms) for w in table.waiters(name)],
        "delayed_until": iso(
            table.delayed_until(name) if table.delayed_until(name) > now_ms else 0
        ),
        "token": max((g.token for g in holders), default=None),
    }
    if history:
        view["history"] = [
            {
                "kind": e.kind.value,
                "session": e.session,
                "index": e.index,
                "token": e.token,
                "detail": e.detail,
            }
            for e in table.history
            if e.name == name
        ]
    return view


def message_view(message: Message, cursor: int | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": message.id,
        "from": message.sender,
        "to": message.to,
        "type": message.type,
        "content": message.content,
        "correlation_id": message.correlation_id,
        "requires_response": message.requires_response,
        "ttl_ms": message.ttl_ms,
        "timestamp": iso(message.timestamp_ms),
        "index": message.index,
        "recipients": list(message.recipients),
        "undelivered": list(message.undelivered),
        "late": message.late,
    }
    if cursor is not None:
        view["cursor"] = cursor
    return view


def agent_view(sm: StateMachine, box: AgentBox, now_ms: int) -> dict[str, Any]:
    task = sm.tasks.peek(box.id)
    return {
        "id": box.id,
        "kind": "task" if task is not None else "named",
        "live": sm.agent_live(box.id, now_ms),
        "session_expires_in_s": round(max(0, box.session_until_ms - now_ms) / 1000.0, 3),
        "subscriptions": list(box.subscriptions),
        "inbox_depth": len(box.inbox),  # unacknowledged (expired ones leave at the next ack)
        "acked": box.acked,
        "last_cursor": box.next_cursor - 1,
        "received": box.received,
    }
