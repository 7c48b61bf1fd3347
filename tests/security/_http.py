"""A master process shared by the tests of one module, and what they check on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import Processes

http = httpx.Client(timeout=10)  # one client: a fresh one per request costs more than the call


@pytest.fixture(scope="module")
def master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    procs = Processes(Path(tmp_path_factory.mktemp("http")))
    try:
        _, url = procs.master("m1")
        yield url
    finally:
        procs.close()


def task_count(url: str) -> int:
    answer = http.get(url + "/api/v1/tasks", params={"limit": 1000}, timeout=10)
    assert answer.status_code == 200, answer.text
    return len(answer.json()["tasks"])


def assert_reads_answer(url: str) -> None:
    """The listing routes every caller uses still answer (they once answered 500 for all)."""
    for path in (
        "/api/v1/tasks",
        "/api/v1/workers",
        "/api/v1/messages",
        "/api/v1/agents",
        "/api/v1/agents/victim/inbox",
        "/api/v1/locks",
        "/health",
    ):
        answer = http.get(url + path, timeout=10)
        assert answer.status_code in (200, 404), (path, answer.status_code, answer.text)
