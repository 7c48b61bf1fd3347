"""Issue 12, finding 3: the peer handshake allocated before authenticating, and frames were
decoded without container limits.

Before: a 60-byte hello with an integer where the nonce's bytes belong became that many zero
bytes (and an HMAC over them) on the event loop, stalling the leader until leadership moved; a
16 MiB frame of nested containers grew a master to 1.45 GB. Now the hello is read under a
2 KiB cap and typed before anything else, and every frame's shape is walked (depth, value
count, declared lengths) before msgpack allocates. The leader keeps its term and its memory.
"""

from __future__ import annotations

import contextlib
import socket

import httpx
import msgpack

from agentflow.cluster import peerwire
from tests.e2e.procs import Cluster, Processes
from tests.security.peer_attacks import PeerClient, peak_rss_mb, refused

RSS_LIMIT_MB = 400
FRAME = 16 << 20


def _nested_frame(size: int) -> bytes:
    """One msgpack array of ``size - 5`` empty arrays: about 16 M containers in 16 MiB."""
    count = size - 5
    return b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count


def _send(port: int, data: bytes) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the master may hang up before all of it arrived
            sock.sendall(data)
        return refused(sock)


def test_hostile_hellos_and_frames_are_refused_and_the_leader_stays(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    before = cluster.status(leader)
    assert before is not None
    master = cluster.masters[leader]
    assert master.proc is not None
    port = master.raft_port
    member = next(n for n in cluster.masters if n != leader)

    hello = {"k": "hello", "v": 1, "cluster": "agentflow", "from": "x", "to": leader}
    tiny = msgpack.packb(hello | {"nonce": 3 << 30, "info": {}})
    assert len(tiny) <= 60
    assert _send(port, peerwire.LEN.pack(len(tiny)) + tiny), "a 60-byte hello was not refused"

    nested = _nested_frame(FRAME)
    assert _send(port, peerwire.LEN.pack(len(nested)) + nested), "a 16 MiB hello was not refused"

    _assert_steady(cluster, leader, before["term"])

    client = PeerClient(port, from_=member, to=leader, token=cluster.token.encode())
    assert client.authenticate()["k"] == "welcome"
    sealed = client.sealer.seal_bytes(_nested_frame(FRAME - peerwire.TAG_BYTES))
    with contextlib.suppress(OSError):
        client.sock.sendall(sealed)
    assert refused(client.sock), "a member's 16 MiB frame of containers was not refused"
    client.close()
    _assert_steady(cluster, leader, before["term"])
    assert "frame holds more than" in master.proc.log()


def _assert_steady(cluster: Cluster, leader: str, term: int) -> None:
    """The leader answers, kept its leadership and term, and never grew past the limit."""
    master = cluster.masters[leader]
    assert master.proc is not None
    assert httpx.get(master.url + "/health", timeout=10).status_code == 200
    after = cluster.status(leader)
    assert after is not None
    assert (after["leader_id"], after["term"]) == (leader, term)
    assert peak_rss_mb(master.proc.pid) < RSS_LIMIT_MB
