"""No going back: a master that applied log format 2 links to no peer that reads only format
1 (a member restarted on the release before format versions), either way; before that, it
links to one as to any other, which is what a rolling upgrade needs."""

from __future__ import annotations

import asyncio

from agentflow.cluster.transport import PeerAddress, Transport
from agentflow.raft import Message, MessageType
from tests.e2e.procs import free_port


def _node(node_id: str, got: list[Message]) -> Transport:
    return Transport(
        node_id=node_id,
        cluster_id="c1",
        token="s3cret",
        host="127.0.0.1",
        port=free_port(),
        on_message=got.append,
        on_unreachable=lambda _peer: None,
    )


async def _links(floor: int) -> tuple[bool, bool, list[Message]]:
    """Whether a (new, at ``floor``) reaches b (which advertises no formats, as the previous
    release), and whether b's message reaches a."""
    got: list[Message] = []
    a, b = _node("a", got), _node("b", got)
    a.format_floor = floor
    b.advertise = {"api_url": "http://127.0.0.1:1"}  # what the previous release advertises
    await a.start()
    await b.start()
    a.set_peer("b", PeerAddress("127.0.0.1", b._port))
    b.set_peer("a", PeerAddress("127.0.0.1", a._port))
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0  # links come up within milliseconds on loopback
        while loop.time() < deadline and not (a.connected("b") and b.connected("a")):
            await asyncio.sleep(0.02)
        b.send(Message(type=MessageType.HEARTBEAT, from_="b", to="a", term=1))
        deadline = loop.time() + 0.5
        while loop.time() < deadline and not got:
            await asyncio.sleep(0.02)
        return a.connected("b"), b.connected("a"), got
    finally:
        await a.close()
        await b.close()


def test_a_peer_of_the_previous_release_links_while_the_cluster_writes_format_1() -> None:
    a_to_b, b_to_a, got = asyncio.run(_links(floor=1))
    assert a_to_b and b_to_a and len(got) == 1


def test_a_peer_of_the_previous_release_is_refused_once_format_2_was_applied() -> None:
    a_to_b, b_to_a, got = asyncio.run(_links(floor=2))
    assert not a_to_b and not b_to_a and got == []
