"""Issue 12, finding 1: the API token bypassed through the peer port.

Before: a single master listened on a Raft port with a built-in peer secret, and a local
process that spoke the handshake as a non-member committed a ``SubmitTasks`` entry that a
worker ran, while every HTTP route answered 401. Now a master without a cluster token opens no
peer port; a cluster needs one, and admits only members of its configuration.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import httpx
import pytest

from agentflow import Client
from agentflow.cluster import peerwire
from agentflow.testing.ports import free_port
from tests.e2e.procs import BIN, Processes, wait_until
from tests.security.peer_attacks import (
    OLD_DEFAULT_TOKEN,
    PeerClient,
    cluster_view,
    injected_append,
    old_protocol_inject,
    refused,
    task_ids,
)

API_TOKEN = "api-token-for-the-test"
TERMINAL = {"completed", "failed", "cancelled", "timed_out"}


def _all_finished(url: str) -> bool:
    response = httpx.get(url + "/api/v1/tasks", headers=_auth(), timeout=10)
    return all(t["status"] in TERMINAL for t in response.json()["tasks"])


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_TOKEN}"}


def test_a_single_master_has_no_peer_port_to_submit_through(
    procs: Processes, tmp_path: Path
) -> None:
    raft_port = free_port()
    _proc, url = procs.master("m1", None, "--api-token", API_TOKEN, raft_port=raft_port)
    procs.worker("w1", url, "--api-token", API_TOKEN)
    assert httpx.get(url + "/api/v1/tasks", timeout=5).status_code == 401
    view = cluster_view(url, API_TOKEN)
    marker = tmp_path / "injected-ran"
    attack = injected_append("m1", view["term"], view["last_index"], f"touch {marker}")
    try:
        old_protocol_inject(raft_port, "m1", OLD_DEFAULT_TOKEN, attack)
        outcome = "a peer port answered"
    except ConnectionRefusedError:
        outcome = "refused"
    # A task through the API afterwards: once it and everything else finished, the worker and
    # the scheduler had their chance to run an injected task.
    with Client(url, token=API_TOKEN) as client:
        legit = client.submit(f"touch {tmp_path / 'legit-ran'}")
        assert client.wait(legit.id, timeout_s=30).status == "completed"
    wait_until(lambda: _all_finished(url), 30, "every task finished")
    assert not marker.exists(), "a task injected through the peer port ran"
    assert task_ids(url, API_TOKEN) == {legit.id}
    assert outcome == "refused"
    assert httpx.get(url + "/health", timeout=5).status_code == 200


@pytest.mark.parametrize(
    "flags",
    [
        ("--peers", "m2=127.0.0.1:1"),
        ("--join",),
        ("--join", "--cluster-token", " "),
        ("--join", "--cluster-token", "t", "--cluster-token-file", "/dev/null"),
    ],
)
def test_a_cluster_without_a_cluster_token_is_refused_at_start(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    argv = [str(BIN / "agentflow-master"), "--data-dir", str(tmp_path / "d"), *flags]
    argv += ["--port", str(free_port())]
    done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "cluster-token" in lines[0] or "cluster token" in lines[0], lines[0]
    assert "Traceback" not in done.stderr


def test_a_cluster_refuses_a_wrong_token_and_non_members(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    before = cluster.status(leader)
    assert before is not None
    port = cluster.masters[leader].raft_port
    member = next(n for n in cluster.masters if n != leader)
    attack = injected_append(leader, before["term"], before["last_index"], "true")

    # The wrong token under a member's id: the challenge is a bare nonce, then the link closes.
    for cluster_id in ("agentflow", "a-guess"):
        wrong = PeerClient(
            port, from_=member, to=leader, token=b"not-the-token", cluster=cluster_id
        )
        assert peerwire.decode_challenge(wrong.challenge)[0] == peerwire.VERSION
        wrong.sock.sendall(wrong.sealer.seal({"k": "auth"}))
        wrong.sock.sendall(wrong.sealer.seal({"k": "msgs", "m": []}))
        assert refused(wrong.sock)
        wrong.close()

    # The right token under an id outside the configuration: refused once authenticated.
    outsider = PeerClient(port, from_="intruder", to=leader, token=cluster.token.encode())
    reply = outsider.authenticate()
    assert reply["k"] == "refuse" and "not a member" in reply["why"], reply
    with contextlib.suppress(OSError):  # it may be closed already
        outsider.send_messages(attack)
    assert refused(outsider.sock)
    outsider.close()

    logged = cluster.masters[leader].proc.log()  # type: ignore[union-attr]
    assert "wrong cluster token" in logged and "not a member" in logged
    after = cluster.status(leader)
    assert after is not None
    assert (after["leader_id"], after["term"]) == (leader, before["term"])
    assert task_ids(cluster.url(leader)) == set()
    with Client(cluster.urls) as client:
        assert client.submit("true").status == "queued"
