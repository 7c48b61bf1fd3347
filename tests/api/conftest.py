"""A whole master in this process, over the in-memory command log, reached through
``httpx.ASGITransport``: no sockets, no Raft, no processes; every route and its errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow.api.app import create_app
from agentflow.api.problems import PROBLEM_JSON
from agentflow.api.service import MasterService, state_machine
from agentflow.cluster.memlog import MemoryLog
from agentflow.config import MasterConfig
from agentflow.state import StateMachine
from agentflow.state.commands import RegisterWorker, ReportAttempts, TaskOutcome

BASE_URL = "http://127.0.0.1:6767"
START_MS = 1_700_000_000_000


@dataclass
class Clock:
    """The master's clock, moved by the test only."""

    now: int = START_MS

    def __call__(self) -> int:
        return self.now


@dataclass
class Master:
    client: httpx.AsyncClient
    log: MemoryLog
    service: MasterService
    clock: Clock
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def machine(self) -> StateMachine:
        return self.log.machine

    def register_worker(self, worker_id: str = "w1", slots: int = 1) -> None:
        """What a worker's session commits when it connects (sessions are WebSockets)."""
        self.log.apply(
            RegisterWorker(
                now_ms=self.clock(),
                worker_id=worker_id,
                group="default",
                slots=slots,
                resources={},
                labels={},
                hostname="test-host",
            )
        )

    def report_output(self, task_id: str, stream: str, data: bytes) -> None:
        """What the worker running ``task_id`` reports as it starts and prints ``data``."""
        task = self.machine.tasks[task_id]
        assert task.worker_id is not None and task.fencing_token is not None
        token = task.fencing_token
        self.log.apply(
            ReportAttempts(
                now_ms=self.clock(),
                worker_id=task.worker_id,
                started=[(task_id, token)],
                output=[(task_id, token, stream, data)],
            )
        )

    def finish(self, task_id: str, status: str = "completed", exit_code: int = 0) -> None:
        """What the worker running ``task_id`` reports when it ends."""
        task = self.machine.tasks[task_id]
        assert task.worker_id is not None and task.fencing_token is not None
        outcome = TaskOutcome(
            task_id=task_id, fencing_token=task.fencing_token, status=status, exit_code=exit_code
        )
        self.log.apply(
            ReportAttempts(
                now_ms=self.clock(), worker_id=task.worker_id, outcomes=[outcome], place=True
            )
        )


async def master_with(tmp_path: Path, **settings: Any) -> AsyncIterator[Master]:
    """A master over a fresh in-memory log, configured with ``settings``, while iterated."""
    config = MasterConfig(data_dir=tmp_path, **settings)
    clock = Clock()
    log = MemoryLog(state_machine(config), node_id=config.node_id, api_url=config.api_url)
    svc = MasterService(config, clock, log=log)
    app = create_app(svc)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield Master(client=client, log=log, service=svc, clock=clock)


@pytest.fixture
async def master(tmp_path: Path) -> AsyncIterator[Master]:
    async for one in master_with(tmp_path):
        yield one


ADMIN_TOKEN = "admin-secret-for-tests-0123456789"


@pytest.fixture
async def guarded(tmp_path: Path) -> AsyncIterator[Master]:
    """A master that checks tokens (``--api-token``); its client sends the admin token."""
    async for one in master_with(tmp_path, api_token=ADMIN_TOKEN):
        one.client.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        yield one


def problem(answer: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The problem document ``answer`` carries, checked against RFC 9457's shape."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM_JSON), answer.headers
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["type"] == f"https://agentflow.dev/problems/{body['code']}"
    assert body["title"] and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


def ok(answer: httpx.Response, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()
