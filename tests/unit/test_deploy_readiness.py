"""The readiness probe (``/health/ready``): 200 only with a leader known and the leader's commit
applied; 503 with the reason otherwise. Liveness (``/health``) stays 200 throughout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentflow.api import readiness
from tests.api.conftest import ADMIN_TOKEN, Master, master_with, ok, problem


@pytest.fixture
async def guarded_master(tmp_path: Path) -> AsyncIterator[Master]:
    async for one in master_with(tmp_path, api_token=ADMIN_TOKEN):  # no token sent: probes
        yield one


@pytest.mark.parametrize("path", ["/health/ready", "/api/v1/health/ready"])
async def test_ready_with_a_leader_and_caught_up_needs_no_token(
    guarded_master: Master, path: str
) -> None:
    body = ok(await guarded_master.client.get(path))
    assert body["status"] == "ready"
    assert body["leader_id"] == guarded_master.service.config.node_id
    assert body["applied_index"] == guarded_master.machine.applied_index


async def test_no_leader_known_is_not_ready_but_alive(guarded_master: Master) -> None:
    guarded_master.log.set_leader(None)
    body = problem(await guarded_master.client.get("/health/ready"), 503, "unavailable")
    assert "knows no leader" in body["detail"]
    assert ok(await guarded_master.client.get("/health"))["status"] == "ok"


async def test_a_member_that_cannot_reach_the_leaders_commit_is_not_ready(
    guarded_master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    never = asyncio.Event()  # the ReadIndex round never completes: this member lags behind

    async def lagging() -> None:
        await never.wait()

    monkeypatch.setattr(guarded_master.log, "read_barrier", lagging)
    monkeypatch.setattr(readiness, "READY_WAIT_S", 0.05)
    body = problem(await guarded_master.client.get("/health/ready"), 503, "unavailable")
    assert "not caught up with the leader's commit index" in body["detail"]
    assert ok(await guarded_master.client.get("/health"))["status"] == "ok"


async def test_a_refused_read_barrier_is_the_reason(guarded_master: Master) -> None:
    await guarded_master.log.close()  # a master shutting down refuses the ReadIndex round
    body = problem(await guarded_master.client.get("/health/ready"), 503, "unavailable")
    assert "shutting down" in body["detail"]
