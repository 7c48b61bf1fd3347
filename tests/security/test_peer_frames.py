"""Issue 12, finding 3 (last part): frames after the handshake carried no authentication.

Now each frame carries an HMAC under a key of its connection, over its direction, its sequence
number and its bytes. Here a process that knows the token and a member's id completes the
handshake (as a member legitimately could), then sends what an on-path attacker could put on
that link: a forged, an unsealed and a replayed frame. Each drops the link before anything is
decoded, and nothing is committed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import msgpack

from agentflow import Client
from agentflow.cluster import peerwire
from agentflow.cluster.codec import encode_message
from tests.e2e.procs import Cluster, Processes
from tests.security.peer_attacks import PeerClient, injected_append, refused, task_ids


def _forged(client: PeerClient, body: bytes) -> bytes:
    return peerwire.LEN.pack(len(body) + peerwire.TAG_BYTES) + body + bytes(peerwire.TAG_BYTES)


def _unsealed(client: PeerClient, body: bytes) -> bytes:
    return peerwire.LEN.pack(len(body)) + body


def _replayed(client: PeerClient, body: bytes) -> bytes:
    harmless = client.sealer.seal({"k": "msgs", "m": []})
    return harmless + harmless


ATTACKS: dict[str, Callable[[PeerClient, bytes], bytes]] = {
    "forged": _forged,
    "unsealed": _unsealed,
    "replayed": _replayed,
}


def test_frames_without_a_valid_mac_drop_the_link_and_commit_nothing(procs: Processes) -> None:
    cluster: Cluster = procs.cluster(3)
    leader = cluster.leader()
    before = cluster.status(leader)
    assert before is not None
    member = next(n for n in cluster.masters if n != leader)
    port = cluster.masters[leader].raft_port
    append = injected_append(leader, before["term"], before["last_index"], "true", from_=member)
    body: bytes = msgpack.packb({"k": "msgs", "m": [encode_message(append)]}, use_bin_type=True)
    for name, attack in ATTACKS.items():
        client = PeerClient(port, from_=member, to=leader, token=cluster.token.encode())
        assert client.authenticate()["k"] == "welcome"
        with contextlib.suppress(OSError):
            client.sock.sendall(attack(client, body))
        assert refused(client.sock), name
        client.close()
    logged = cluster.masters[leader].proc.log()  # type: ignore[union-attr]
    assert logged.count("failed its MAC") >= len(ATTACKS), logged[-3000:]
    after = cluster.status(leader)
    assert after is not None
    assert (after["leader_id"], after["term"]) == (leader, before["term"])
    assert task_ids(cluster.url(leader)) == set()
    with Client(cluster.urls) as sdk:
        assert sdk.submit("true").status == "queued"
