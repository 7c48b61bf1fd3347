"""``GET /api/v1/tasks?history=true`` over the SQL log and its history tables on a real
database: the listing pages on past the few tasks a master keeps in memory, and a second
master of the store (a follower) lists and reads the same history."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from agentflow.api.app import create_app
from agentflow.api.service import MasterService, state_machine
from agentflow.cluster.sql import LogStore, StoreUrl
from agentflow.cluster.sql.history import SqlHistory
from agentflow.cluster.sql.logconfig import SqlLogConfig
from agentflow.cluster.sql.sqllog import SqlLog
from agentflow.config import MasterConfig
from agentflow.testing.sqlserve import MariaDbServer, PostgresServer
from tests.api.conftest import BASE_URL, Clock, ok
from tests.sql.conftest import WAIT_S


@asynccontextmanager
async def sql_master(
    tmp_path: Path, store: str, url: StoreUrl, node_id: str
) -> AsyncIterator[tuple[httpx.AsyncClient, MasterService]]:
    """A master on the SQL store ``store`` that keeps 2 finished tasks in memory."""
    config = MasterConfig(
        node_id=node_id, data_dir=tmp_path / node_id, store=store, max_finished_tasks=2
    )
    log = SqlLog(
        SqlLogConfig(
            node_id=node_id,
            api_url=config.api_url,
            store_url=url.redacted(),
            lease_ttl_s=60.0,  # a busy machine never loses it
            renew_s=10.0,
            margin_s=10.0,
        ),
        state_machine(config),
        LogStore(url),
    )
    svc = MasterService(config, Clock(), log=log)
    app = create_app(svc)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client, svc


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not within {WAIT_S}s: {what}"
        await asyncio.sleep(0.02)


async def listing(client: httpx.AsyncClient, limit: int) -> list[list[dict[str, Any]]]:
    """Every page of ``GET /api/v1/tasks?history=true``, following next_cursor."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"history": "true", "limit": limit, "status": "cancelled"}
        if cursor is not None:
            params["cursor"] = cursor
        body = ok(await client.get("/api/v1/tasks", params=params))
        pages.append(body["tasks"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages


async def test_the_listing_pages_through_history_beyond_memory_on_any_master(
    tmp_path: Path, server: PostgresServer | MariaDbServer, url: StoreUrl
) -> None:
    store = server.url(url.database)
    async with sql_master(tmp_path, store, url, "m1") as (client, svc):
        await eventually(lambda: svc.log.is_leader, "m1 leads")
        ids = []
        for i in range(7):
            body = {"title": f"T{i}", "command": "true", "group": "nowhere"}  # never placed
            created = ok(await client.post("/api/v1/tasks", json=body), 201)
            ids.append(created["id"])
            ok(await client.post(f"/api/v1/tasks/{created['id']}/cancel"))
        history = svc.history
        assert isinstance(history, SqlHistory)
        await eventually(lambda: history.backlog == 0, "the history written")
        assert len(svc.machine.tasks) == 2  # five evicted from memory
        scraped = (await client.get("/metrics")).text
        assert "agentflow_history_backlog 0.0" in scraped
        assert f"agentflow_history_written_total {float(history.written)}" in scraped
        assert history.written >= 5 and "agentflow_history_dropped_total 0.0" in scraped
        pages = await listing(client, 3)
        listed = [t["id"] for page in pages for t in page]
        assert listed == ids[::-1]  # the two in memory, then the evicted, the last first
        assert [len(p) for p in pages] == [3, 3, 1]
        assert [t.get("from_history", False) for p in pages for t in p] == [False] * 2 + [True] * 5

        async with sql_master(tmp_path, store, url, "m2") as (follower, other):
            assert not other.log.is_leader
            await eventually(
                lambda: other.machine.applied_index >= svc.machine.applied_index, "m2 caught up"
            )
            assert [t["id"] for p in await listing(follower, 2) for t in p] == ids[::-1]
            old = ok(await follower.get(f"/api/v1/tasks/{ids[0]}"))
            assert old["from_history"] is True and old["title"] == "T0"
            assert old["status"] == "cancelled"
            assert other.history.stats().written == 0  # only the writer writes
