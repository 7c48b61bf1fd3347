"""The whole API over the SQL log (design 20 §3), its store an in-process double: a task
submitted and read back, the cluster status naming the store, membership refused, and a
second master over the same database replaying the task from the table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from agentflow.api.app import create_app
from agentflow.api.service import MasterService, state_machine
from agentflow.cluster.sql.logconfig import SqlLogConfig
from agentflow.cluster.sql.sqllog import SqlLog
from agentflow.config import MasterConfig
from tests.api.conftest import BASE_URL, Clock, ok, problem
from tests.dictstore import DictDatabase, DictStore


@asynccontextmanager
async def sql_master(
    tmp_path: Path, db: DictDatabase, node_id: str
) -> AsyncIterator[tuple[httpx.AsyncClient, SqlLog]]:
    """A master over a SQL log on ``db``, on the wall clock (a lease long enough that a busy
    machine never loses it), reached in process."""
    config = MasterConfig(node_id=node_id, data_dir=tmp_path / node_id)
    log = SqlLog(
        SqlLogConfig(
            node_id=node_id,
            api_url=config.api_url,
            store_url="dict://test",
            lease_ttl_s=60.0,
            renew_s=10.0,
            margin_s=10.0,
        ),
        state_machine(config),
        DictStore(db),
    )
    app = create_app(MasterService(config, Clock(), log=log))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client, log


async def eventually(condition: object, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.01)


async def test_a_task_goes_through_the_sql_log_and_is_read_back(tmp_path: Path) -> None:
    db = DictDatabase()
    async with sql_master(tmp_path, db, "m1") as (client, log):
        await eventually(lambda: log.is_leader)
        created = ok(
            await client.post("/api/v1/tasks", json={"title": "T", "command": "true"}), 201
        )
        assert created["created"] is True and created["status"] == "queued"
        got = ok(await client.get(f"/api/v1/tasks/{created['id']}"))
        assert got["id"] == created["id"] and got["title"] == "T"
        status = ok(await client.get("/api/v1/cluster"))
        assert status["store"] == "dict://test" and status["role"] == "leader"
        assert status["leader_id"] == "m1" and status["applied_index"] == max(db.log)
        body = {"id": "m2", "raft_address": "127.0.0.1:7001", "api_url": "http://127.0.0.1:6768"}
        problem(await client.post("/api/v1/cluster/members", json=body), 409, "conflict")
        health = ok(await client.get("/health"))
        assert health["role"] == "leader" and health["applied_index"] == log.machine.applied_index
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200 and "agentflow_applied_index" in metrics.text
    first = log.machine.applied_index  # (its loops may have proposed more until it closed)
    # The first master closed and released its lease: the next one leads at once, having
    # replayed the table.
    async with sql_master(tmp_path, db, "m2") as (client, log):
        await eventually(lambda: log.is_leader)
        assert log.machine.applied_index >= first
        again = ok(await client.get(f"/api/v1/tasks/{created['id']}"))
        assert again["title"] == "T"
