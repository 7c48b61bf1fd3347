"""The served OpenAPI document declares every route's request body and answers, and the real
server's answers match it (a schema-driven fuzzer relies on both)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow.api import MasterService, create_app
from agentflow.api.openapi import ANSWERS, BODIES
from agentflow.config import MasterConfig
from tests.security._http import http, master

__all__ = ["master"]

WRITES = ("post", "put", "patch")


@pytest.fixture(scope="module")
def document(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = Path(tmp_path_factory.mktemp("openapi"))
    doc: dict[str, Any] = create_app(MasterService(MasterConfig(data_dir=data_dir))).openapi()
    return doc


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, item in doc["paths"].items() for m, op in item.items()]


def test_every_write_declares_its_body_and_every_route_its_answers(
    document: dict[str, Any],
) -> None:
    operations = _operations(document)
    assert len(operations) > 40
    for method, path, op in operations:
        if method in WRITES:
            body = op.get("requestBody")
            assert body is not None, f"{method} {path} declares no request body"
            assert set(body["content"]) == {"application/json"}
        responses = op["responses"]
        assert any(s.startswith("2") for s in responses), f"{method} {path}: no success"
        problem = responses["default"]["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/Problem"}
        assert "422" not in responses  # FastAPI's own 422 shape is not what the API answers


def test_every_reference_resolves_and_no_table_entry_is_stale(document: dict[str, Any]) -> None:
    text = repr(document)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in document["components"]["schemas"], name
    declared = {(m, p) for m, p, _ in _operations(document)}
    assert set(BODIES) <= declared
    assert set(ANSWERS) <= declared


# -- the server keeps to the document ----------------------------------------------------------


def _matches(schema: dict[str, Any], value: Any, doc: dict[str, Any], where: str) -> None:
    """A check of the JSON Schema subset the document uses for answers."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    kind = schema.get("type")
    types = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int}
    if kind in types:
        assert isinstance(value, types[kind]), f"{where}: {value!r} is not {kind}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, dict):
        for name in schema.get("required", []):
            assert name in value, f"{where}: missing {name}"
        for name, sub in schema.get("properties", {}).items():
            if (name in value and value[name] is not None) or name in schema.get("required", []):
                _matches(sub, value[name], doc, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            _matches(schema["items"], item, doc, f"{where}[{n}]")


def _check(doc: dict[str, Any], method: str, path: str, answer: httpx.Response) -> None:
    responses = doc["paths"][path][method]["responses"]
    declared = responses.get(str(answer.status_code)) or responses["default"]
    where = f"{method} {path} -> {answer.status_code}"
    if answer.status_code == 204:
        assert "content" not in declared and not answer.content, where
        return
    media = answer.headers["content-type"].split(";")[0]
    assert media in declared["content"], f"{where}: {media} not declared"
    if media.endswith("json"):
        _matches(declared["content"][media]["schema"], answer.json(), doc, where)


WORKFLOW = {"tasks": [{"id": "a", "command": "true"}]}
CALLS: list[tuple[str, str, Any]] = [  # (method, OpenAPI path, JSON body or None)
    ("post", "/api/v1/tasks", {"command": "true", "idempotency_key": "k"}),
    ("post", "/api/v1/tasks", {"command": "true", "idempotency_key": "k"}),
    ("post", "/api/v1/tasks", {"command": "true", "priority": "top"}),
    ("post", "/api/v1/tasks/batch", {"tasks": [{"command": "true"}]}),
    ("get", "/api/v1/tasks", None),
    ("get", "/api/v1/tasks/{task_id}", None),
    ("patch", "/api/v1/tasks/{task_id}", {"priority": "high"}),
    ("post", "/api/v1/tasks/{task_id}/cancel", None),
    ("get", "/api/v1/tasks/{task_id}/output", None),
    ("get", "/api/v1/queue/stats", None),
    ("get", "/api/v1/workers", None),
    ("post", "/api/v1/agents/{agent_id}/connect", None),
    ("put", "/api/v1/agents/{agent_id}/subscriptions/{pattern}", None),
    ("post", "/api/v1/messages", {"to": "a1", "type": "t", "content": 1}),
    ("post", "/api/v1/messages/batch", {"messages": [{"to": "a1", "type": "t"}]}),
    ("get", "/api/v1/messages", None),
    ("get", "/api/v1/agents/{agent_id}/inbox", None),
    ("post", "/api/v1/agents/{agent_id}/ack", {"cursor": 1}),
    ("get", "/api/v1/agents", None),
    ("get", "/api/v1/agents/{agent_id}", None),
    ("delete", "/api/v1/agents/{agent_id}/subscriptions/{pattern}", None),
    ("post", "/api/v1/agents/{agent_id}/disconnect", None),
    ("post", "/api/v1/locks/{name}/acquire", {"session": "s"}),
    ("post", "/api/v1/locks/{name}/acquire", {"session": "s2"}),
    ("get", "/api/v1/locks", None),
    ("get", "/api/v1/locks/{name}", None),
    ("post", "/api/v1/locks/{name}/force-release", None),
    ("post", "/api/v1/workflows/validate", WORKFLOW),
    ("post", "/api/v1/workflows", WORKFLOW),
    ("get", "/api/v1/workflows", None),
    ("get", "/api/v1/workflows/{workflow_id}", None),
    ("get", "/api/v1/cluster", None),
    ("get", "/health", None),
    ("get", "/metrics", None),
]
PARAMS = {"agent_id": "a1", "pattern": "t", "name": "l", "workflow_id": "wf-none"}


@pytest.mark.slow
def test_the_server_answers_as_the_document_says(master: str, document: dict[str, Any]) -> None:
    task = http.post(master + "/api/v1/tasks", json={"command": "sleep 30"}).json()["id"]
    for method, path, body in CALLS:
        url = master + path.format_map(PARAMS | {"task_id": task})
        answer = (
            http.request(method.upper(), url, json=body)
            if body
            else http.request(method.upper(), url)
        )
        _check(document, method, path, answer)
    refused = http.post(master + "/api/v1/tasks", content=b"x", headers={"Content-Type": "text/x"})
    _check(document, "post", "/api/v1/tasks", refused)
