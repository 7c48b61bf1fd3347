"""docs/api.md lists every route of the OpenAPI document, and no route the document lacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentflow.api import MasterService, create_app
from agentflow.config import MasterConfig
from tests.docs.blocks import ROOT

API_DOC = ROOT / "docs" / "api.md"
ROUTE = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE|WS) (/[^`]*)` \|", re.MULTILINE)
SOCKETS = {
    ("WS", "/api/v1/workers/{worker_id}/session"),
    ("WS", "/api/v1/locks"),
    ("WS", "/api/v1/agents/{agent_id}/stream"),
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> set[tuple[str, str]]:
    data_dir = Path(tmp_path_factory.mktemp("api-doc"))
    document = create_app(MasterService(MasterConfig(data_dir=data_dir))).openapi()
    return {(m.upper(), p) for p, item in document["paths"].items() for m in item}


def test_every_route_is_documented(served: set[tuple[str, str]]) -> None:
    documented = set(ROUTE.findall(API_DOC.read_text()))
    missing = sorted(f"{m} {p}" for m, p in served - documented)
    assert not missing, f"docs/api.md lacks a row `| \\`METHOD /path\\` | ... |` for: {missing}"


def test_every_documented_route_exists(served: set[tuple[str, str]]) -> None:
    documented = set(ROUTE.findall(API_DOC.read_text()))
    unknown = sorted(f"{m} {p}" for m, p in documented - served - SOCKETS)
    assert not unknown, f"docs/api.md lists routes the master does not serve: {unknown}"
