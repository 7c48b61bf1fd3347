"""The peer transport, two nodes in one process on loopback."""

from __future__ import annotations

import asyncio

from agentflow.cluster.transport import PeerAddress, Transport
from agentflow.raft import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from tests.e2e.procs import free_port


def _pair(
    token_a: str = "s3cret", token_b: str = "s3cret", cluster_b: str = "c1"
) -> tuple[Transport, Transport, list[Message], list[str]]:
    got: list[Message] = []
    unreachable: list[str] = []
    a = Transport(
        node_id="a",
        cluster_id="c1",
        token=token_a,
        host="127.0.0.1",
        port=free_port(),
        on_message=got.append,
        on_unreachable=unreachable.append,
    )
    b = Transport(
        node_id="b",
        cluster_id=cluster_b,
        token=token_b,
        host="127.0.0.1",
        port=free_port(),
        on_message=got.append,
        on_unreachable=unreachable.append,
    )
    return a, b, got, unreachable


async def _exchange(a: Transport, b: Transport, msgs: list[Message], wait_s: float) -> None:
    await a.start()
    await b.start()
    a.set_peer("b", PeerAddress("127.0.0.1", b._port))
    try:
        deadline = asyncio.get_running_loop().time() + wait_s
        while not a.connected("b") and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        for msg in msgs:
            a.send(msg)
        await asyncio.sleep(0.3)
    finally:
        await a.close()
        await b.close()


def test_messages_and_chunked_snapshots_arrive_intact() -> None:
    a, b, got, _ = _pair()
    data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB: several chunks
    snap = Snapshot(
        metadata=SnapshotMetadata(index=9, term=2, conf_state=ConfState(voters=frozenset("ab"))),
        data=data,
    )
    msgs = [
        Message(type=MessageType.HEARTBEAT, from_="a", to="b", term=2, commit=4),
        Message(type=MessageType.SNAPSHOT, from_="a", to="b", term=2, snapshot=snap),
    ]
    asyncio.run(_exchange(a, b, msgs, 5.0))
    assert [m.type for m in got] == [MessageType.HEARTBEAT, MessageType.SNAPSHOT]
    assert got[0] == msgs[0]
    assert got[1].snapshot is not None and got[1].snapshot.data == data
    assert got[1].snapshot.metadata == snap.metadata


def test_wrong_token_or_cluster_is_refused() -> None:
    for a, b, got, unreachable in (_pair(token_b="other"), _pair(cluster_b="c2")):
        msg = Message(type=MessageType.HEARTBEAT, from_="a", to="b", term=1)
        asyncio.run(_exchange(a, b, [msg], 1.0))
        assert got == []
        assert not a.connected("b")
        assert "b" in unreachable  # Raft is told, so it probes later instead of piling up
