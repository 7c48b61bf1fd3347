"""docs/api.md lists every route of the OpenAPI document, and no route the document lacks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentflow import errors
from agentflow.api import MasterService, create_app, openapi
from agentflow.config import MasterConfig
from tests.docs.blocks import ROOT

API_DOC = ROOT / "docs" / "api.md"
ROUTE = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE|WS) (/[^`]*)` \|", re.MULTILINE)
SOCKETS = {("WS", path) for path in openapi.SOCKETS}  # listed apart in the document


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


def test_every_socket_is_served_and_documented(tmp_path: Path) -> None:
    documented = set(ROUTE.findall(API_DOC.read_text()))
    assert documented >= SOCKETS
    app = create_app(MasterService(MasterConfig(data_dir=tmp_path)))
    paths = {getattr(r, "path", None) for r in app.router.routes}
    assert paths >= {path for _, path in SOCKETS}


def test_every_api_error_is_in_the_errors_table() -> None:
    """Each error class an API answer can carry has a row: its status, its code, its exit code."""
    rows = [line for line in API_DOC.read_text().splitlines() if re.match(r"^\| \d{3} \|", line)]
    wrong = []
    for cls in (*_subclasses(errors.ClientError), *_subclasses(errors.ServiceError)):
        if not any(
            row.startswith(f"| {cls.status} |")
            and f"`{cls.code}`" in row
            and row.endswith(f"| {cls.exit_code} |")
            for row in rows
        ):
            wrong.append(f"{cls.__name__} ({cls.status}, {cls.code}, exit {cls.exit_code})")
    assert not wrong, f"docs/api.md#errors lacks or misstates: {wrong}"


def _subclasses(root: type[errors.AgentFlowError]) -> list[type[errors.AgentFlowError]]:
    found = [root]
    for sub in root.__subclasses__():
        found += _subclasses(sub)
    return found
