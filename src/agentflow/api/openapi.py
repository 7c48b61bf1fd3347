"""The served OpenAPI document (``/openapi.json``, also ``/api/openapi.json``): the real
contract of every route.

Routes read their bodies themselves (:func:`agentflow.api.decoding.read_model`: bounded, strict
JSON), so FastAPI cannot see them; this module declares, per operation, the request body (the
pydantic model the route validates with), the success answers, and ``application/problem+json``
for every error. A schema-driven fuzzer checks the server against this document, so it says
only what is true: success schemas name the fields every answer has, and allow more.
"""

from __future__ import annotations

from typing import Any

import pydantic
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from agentflow.api.cluster_routes import MemberIn, TransferIn
from agentflow.api.index_routes import COLLECTIONS, LINKS
from agentflow.api.schedule_routes import ScheduleIn, SchedulePatchIn
from agentflow.api.schemas import (
    AckIn,
    ConnectIn,
    LockAcquireIn,
    LockForceIn,
    LockReleaseIn,
    LockRenewIn,
    MessageBatchIn,
    MessageIn,
    RequestIn,
    TaskBatchIn,
    TaskIn,
    TaskPatchIn,
    WorkerPatchIn,
    WorkflowIn,
)
from agentflow.api.submit_stream import SubmitBatchFrame, SubmitTaskFrame
from agentflow.api.token_routes import TokenIn
from agentflow.cluster.status import LINK_STATES
from agentflow.state.records import TaskStatus, WorkerState, WorkflowStatus

__all__ = ["BODIES", "SOCKETS", "SOCKET_FRAMES", "Problem", "install_openapi"]

PROBLEM_JSON = "application/problem+json"


class Problem(pydantic.BaseModel):
    """An RFC 9457 problem document: every error the API answers."""

    model_config = pydantic.ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None


NoBody = None
# The sockets whose client frames are models (answers: ``{"ref", "status", "body"}`` with the
# matching HTTP route's answer, or ``{"ref", "error": Problem}``); see docs/api.md.
SOCKET_FRAMES: dict[str, tuple[type[pydantic.BaseModel], ...]] = {
    "/api/v1/submit": (SubmitTaskFrame, SubmitBatchFrame),
}
# (method, OpenAPI path) -> (the body model, whether a body is required). A route taking no
# body refuses one that is not an empty object; it is declared as an optional empty object.
BODIES: dict[tuple[str, str], tuple[type[pydantic.BaseModel] | None, bool]] = {
    ("post", "/api/v1/tasks"): (TaskIn, True),
    ("post", "/api/v1/tasks/batch"): (TaskBatchIn, True),
    ("patch", "/api/v1/tasks/{task_id}"): (TaskPatchIn, True),
    ("post", "/api/v1/tasks/{task_id}/cancel"): (NoBody, False),
    ("patch", "/api/v1/workers/{worker_id}"): (WorkerPatchIn, True),
    ("post", "/api/v1/locks/{name}/acquire"): (LockAcquireIn, True),
    ("post", "/api/v1/locks/{name}/renew"): (LockRenewIn, True),
    ("post", "/api/v1/locks/{name}/release"): (LockReleaseIn, True),
    ("post", "/api/v1/locks/{name}/force-release"): (LockForceIn, False),
    ("post", "/api/v1/messages"): (MessageIn, True),
    ("post", "/api/v1/messages/batch"): (MessageBatchIn, True),
    ("post", "/api/v1/messages/request"): (RequestIn, True),
    ("post", "/api/v1/agents/{agent_id}/connect"): (ConnectIn, False),
    ("post", "/api/v1/agents/{agent_id}/disconnect"): (NoBody, False),
    ("post", "/api/v1/agents/{agent_id}/ack"): (AckIn, True),
    ("put", "/api/v1/agents/{agent_id}/subscriptions/{pattern}"): (NoBody, False),
    ("post", "/api/v1/workflows/validate"): (WorkflowIn, True),
    ("post", "/api/v1/workflows"): (WorkflowIn, True),
    ("post", "/api/v1/workflows/{workflow_id}/cancel"): (NoBody, False),
    ("post", "/api/v1/workflows/{workflow_id}/retry"): (NoBody, False),
    ("post", "/api/v1/cluster/members"): (MemberIn, True),
    ("post", "/api/v1/tokens"): (TokenIn, True),
    ("post", "/api/v1/cluster/transfer-leadership"): (TransferIn, True),
    ("post", "/api/v1/schedules"): (ScheduleIn, True),
    ("patch", "/api/v1/schedules/{name}"): (SchedulePatchIn, True),
}


def _object(required: dict[str, Any], **more: Any) -> dict[str, Any]:
    """An object that has at least the ``required`` fields (and may have others)."""
    return {"type": "object", "required": sorted(required), "properties": required, **more}


def _enum(values: type[Any]) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


def _page(key: str, item: dict[str, Any]) -> dict[str, Any]:
    return _object({key: {"type": "array", "items": item}})


_STR = {"type": "string"}
_TASK = _object({"id": _STR, "status": _enum(TaskStatus), "title": _STR})
_TASK["properties"]["from_history"] = {
    "type": "boolean",
    "description": "true when read from the history (evicted from memory): the master's file"
    " on disk, or the SQL store's history tables",
}
_WORKER = _object({"id": _STR, "state": _enum(WorkerState)})
_MESSAGE = _object({"id": _STR, "type": _STR, "to": _STR})
_AGENT = _object({"id": _STR, "live": {"type": "boolean"}})
_LOCK = _object({"name": _STR, "held": {"type": "boolean"}})
_GRANT = _object({"name": _STR, "token": {"type": "integer"}})
_WORKFLOW = _object({"id": _STR, "status": _enum(WorkflowStatus)})
_TOKEN = _object({"id": _STR, "role": _STR})
_SCHEDULE = _object(
    {
        "name": _STR,
        "timezone": _STR,
        "paused": {"type": "boolean"},
        "overlap": {"type": "string", "enum": ["skip", "allow", "cancel_previous"]},
        "catchup": {"type": "string", "enum": ["none", "last", "all"]},
        "next_run": {"type": ["string", "null"]},
        "last_run": {"type": ["string", "null"]},
    }
)
_MEMBER = _object(
    {
        "id": _STR,
        "role": _STR,
        "connected": {"type": "boolean"},
        "link": {"type": "string", "enum": list(LINK_STATES)},
    }
)
_CLUSTER = _object(
    {
        "node_id": _STR,
        "term": {"type": "integer"},
        "members": {"type": "array", "items": _MEMBER},
        "link_timeout_s": {"type": "number"},
    }
)
# The readiness probe's answer; a member that is not ready answers 503 with a problem document.
_READY = _object(
    {
        "status": {"type": "string", "enum": ["ready"]},
        "node_id": _STR,
        "leader_id": _STR,
        "applied_index": {"type": "integer"},
    }
)
_ANY_OBJECT: dict[str, Any] = {"type": "object"}
_NO_FIELDS: dict[str, Any] = {
    "description": "This route takes no body: none, or an empty object",
    "type": "object",
    "maxProperties": 0,
}


def _links(names: dict[str, str]) -> dict[str, Any]:
    return _object({name: _STR for name in names})


# (method, OpenAPI path) -> {status: JSON schema}; 200 with any object unless listed here.
ANSWERS: dict[tuple[str, str], dict[int, dict[str, Any]]] = {
    ("get", "/"): {200: _object({"name": _STR, "version": _STR, "links": _links(LINKS)})},
    ("get", "/api/v1"): {200: _object({"version": _STR, "links": _links(COLLECTIONS)})},
    ("post", "/api/v1/tasks"): {200: _TASK, 201: _TASK},
    ("post", "/api/v1/tasks/batch"): {201: _page("tasks", _object({"id": _STR}))},
    ("get", "/api/v1/tasks"): {200: _page("tasks", _TASK)},
    ("get", "/api/v1/tasks/{task_id}"): {200: _TASK},
    ("post", "/api/v1/tasks/{task_id}/cancel"): {200: _TASK},
    ("patch", "/api/v1/tasks/{task_id}"): {200: _TASK},
    ("get", "/api/v1/workers"): {200: _page("workers", _WORKER)},
    ("get", "/api/v1/workers/{worker_id}"): {200: _WORKER},
    ("patch", "/api/v1/workers/{worker_id}"): {200: _WORKER},
    ("post", "/api/v1/locks/{name}/acquire"): {200: _GRANT},
    ("post", "/api/v1/locks/{name}/renew"): {200: _GRANT},
    ("get", "/api/v1/locks"): {200: _page("locks", _LOCK)},
    ("get", "/api/v1/locks/{name}"): {200: _LOCK},
    ("post", "/api/v1/messages"): {200: _MESSAGE, 201: _MESSAGE},
    ("post", "/api/v1/messages/batch"): {201: _page("messages", _ANY_OBJECT)},
    ("get", "/api/v1/messages"): {200: _page("messages", _MESSAGE)},
    ("get", "/api/v1/agents"): {200: _page("agents", _AGENT)},
    ("get", "/api/v1/agents/{agent_id}"): {200: _AGENT},
    ("post", "/api/v1/agents/{agent_id}/connect"): {200: _AGENT},
    ("post", "/api/v1/agents/{agent_id}/disconnect"): {200: _AGENT},
    ("post", "/api/v1/agents/{agent_id}/ack"): {200: _AGENT},
    ("put", "/api/v1/agents/{agent_id}/subscriptions/{pattern}"): {200: _AGENT},
    ("get", "/api/v1/agents/{agent_id}/inbox"): {200: _page("messages", _MESSAGE)},
    ("post", "/api/v1/workflows"): {200: _WORKFLOW, 201: _WORKFLOW},
    ("get", "/api/v1/workflows"): {200: _page("workflows", _WORKFLOW)},
    ("get", "/api/v1/workflows/{workflow_id}"): {200: _WORKFLOW},
    ("post", "/api/v1/workflows/{workflow_id}/cancel"): {200: _WORKFLOW},
    ("post", "/api/v1/workflows/{workflow_id}/retry"): {200: _WORKFLOW},
    ("post", "/api/v1/tokens"): {201: _object({"id": _STR, "role": _STR, "token": _STR})},
    ("get", "/api/v1/tokens"): {200: _page("tokens", _TOKEN)},
    ("get", "/api/v1/cluster"): {200: _CLUSTER},
    ("get", "/health/ready"): {200: _READY},
    ("get", "/api/v1/health/ready"): {200: _READY},
    ("delete", "/api/v1/tokens/{token_id}"): {200: _TOKEN},
    ("post", "/api/v1/schedules"): {201: _SCHEDULE},
    ("get", "/api/v1/schedules"): {200: _page("schedules", _SCHEDULE)},
    ("get", "/api/v1/schedules/{name}"): {200: _SCHEDULE},
    ("patch", "/api/v1/schedules/{name}"): {200: _SCHEDULE},
    ("delete", "/api/v1/schedules/{name}"): {
        200: _object({"name": _STR, "deleted": {"type": "boolean"}})
    },
}
NO_CONTENT = frozenset({("delete", "/api/v1/agents/{agent_id}/subscriptions/{pattern}")})
# ?follow=true streams text (both streams, or ?stream=stdout|stderr from its byte ?offset=N)
TEXT_TOO = frozenset({("get", "/api/v1/tasks/{task_id}/output")})
TEXT_ONLY = frozenset({("get", "/metrics")})
# A backup file (agentflow.cluster.backup): a magic line, a JSON header line, the image's bytes
BINARY_ONLY = frozenset({("get", "/api/v1/cluster/backup")})


# The WebSockets, which OpenAPI cannot describe as operations: their frames are in docs/api.md.
SOCKETS: dict[str, dict[str, str]] = {
    "/api/v1/workers/{worker_id}/session": {
        "summary": "The worker protocol: msgpack frames (a worker token)",
    },
    "/api/v1/locks": {
        "summary": "Many leases over one socket: acquire, renew and release frames, by ref",
    },
    "/api/v1/agents/{agent_id}/stream": {
        "summary": "An agent's inbox as it fills; send and ack frames the other way",
    },
    "/api/v1/events": {
        "summary": "Task, workflow, worker, lock and message events as they apply, each with "
        "its log index: filtered (task ids, workflow, group, kinds), resumable from an index "
        "(from_index), served by any master; read-only tokens may follow it",
    },
    "/api/v1/submit": {
        "summary": "Single and batch submits over one socket, each answered by ref once "
        "committed, with the HTTP routes' bodies, bounds and roles",
    },
}


def install_openapi(app: FastAPI) -> None:
    """Serve the document built by :func:`build_openapi` (once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):  # FastAPI's 422, not ours
        schemas.pop(unused, None)
    models: list[type[pydantic.BaseModel]] = sorted(
        {m for m, _ in BODIES.values() if m is not None}, key=lambda m: m.__name__
    )
    models += [Problem, *(m for frames in SOCKET_FRAMES.values() for m in frames)]
    _, defs = models_json_schema(
        [(m, "validation") for m in models],
        ref_template="#/components/schemas/{model}",
    )
    schemas.update(defs.get("$defs", {}))
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            _declare(operation, (method, path))
    document["x-websockets"] = {  # OpenAPI has no WebSocket operations: listed apart
        path: {
            **about,
            **(
                {"clientFrames": [{"$ref": f"#/components/schemas/{m.__name__}"} for m in frames]}
                if (frames := SOCKET_FRAMES.get(path))
                else {}
            ),
        }
        for path, about in SOCKETS.items()
    }
    return document


def _declare(operation: dict[str, Any], key: tuple[str, str]) -> None:
    if key in BODIES:
        model, required = BODIES[key]
        schema = {"$ref": f"#/components/schemas/{model.__name__}"} if model else _NO_FIELDS
        operation["requestBody"] = {
            "required": required,
            "content": {"application/json": {"schema": schema}},
        }
    problem = {"$ref": "#/components/schemas/Problem"}
    responses: dict[str, Any] = {}
    if key in NO_CONTENT:
        responses["204"] = {"description": "Done"}
    elif key in TEXT_ONLY:
        responses["200"] = {"description": "OK", "content": {"text/plain": {"schema": _STR}}}
    elif key in BINARY_ONLY:
        binary = {"type": "string", "format": "binary"}
        responses["200"] = {
            "description": "A backup file",
            "content": {"application/octet-stream": {"schema": binary}},
        }
    else:
        for status, schema in ANSWERS.get(key, {200: _ANY_OBJECT}).items():
            content: dict[str, Any] = {"application/json": {"schema": schema}}
            if key in TEXT_TOO:
                content["text/plain"] = {"schema": _STR}
            responses[str(status)] = {"description": "OK", "content": content}
    responses["default"] = {
        "description": "An error, as a problem document",
        "content": {PROBLEM_JSON: {"schema": problem}},
    }
    operation["responses"] = responses
