"""The SDK's submit socket follows the leader and survives its death, sync and async.

Three masters: a client that starts on a follower is sent to the leader (its socket is opened
there); when that leader is killed mid-stream of submits, every acknowledged task is on the new
leader and none is made twice (the same idempotency keys go by HTTP, then over a new socket).
"""

from __future__ import annotations

import asyncio

from agentflow import AsyncClient, Client
from tests.e2e.procs import Processes


def test_the_socket_follows_the_leader_and_a_leader_kill_loses_no_ack(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    follower = next(name for name in cluster.masters if name != leader)
    acked: list[str] = []
    with Client([cluster.url(follower), *(m.url for m in cluster.masters.values())]) as client:
        for i in range(5):
            acked.append(client.submit(f"echo {i}").id)
        assert client.submit_socket.connected
        assert client._failover.base == cluster.url(leader)  # the socket went to the leader
        cluster.kill9(leader)
        for i in range(5, 10):  # the socket is gone: HTTP finds the new leader, then a socket
            acked.append(client.submit(f"echo {i}").id)
        acked += client.submit_many({"command": f"echo {i}"} for i in range(10, 1200))
        assert len(set(acked)) == len(acked) == 1200
        assert all(client.get(task_id).title for task_id in (acked[0], acked[9], acked[-1]))
        assert client.queue_stats()["totals"]["submitted"] == 1200


def test_the_async_client_submits_over_the_socket(procs: Processes) -> None:
    _, url = procs.master("m1", None)

    async def run() -> tuple[list[str], bool]:
        async with AsyncClient(url) as client:
            ids = [(await client.submit("echo one")).id, (await client.submit("echo two")).id]
            ids += await client.submit_many({"command": f"echo {i}"} for i in range(1500))
            return ids, client.submit_socket.connected

    ids, connected = asyncio.run(run())
    assert connected and len(set(ids)) == 1502
