"""End to end on clusters of real master processes: failover, partitions, restarts, membership.

Every master runs on 127.0.0.1 with its own ports and data directory (see
:meth:`Processes.cluster`); partitions go through the relays of ``faultproxy``. Replicas are
compared through what the API exposes: ``GET /api/v1/cluster?digest=true`` (a hash of the
replicated state at an applied index) and stale reads of every task.
"""

from __future__ import annotations

import collections
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow import Client
from tests.e2e.procs import Cluster, Processes, wait_until

STALE = {"consistency": "stale"}
MEMBERS = "/api/v1/cluster/members"
PROBLEM_JSON = "application/problem+json"


# -- helpers ---------------------------------------------------------------------------------


def stale_tasks(url: str) -> dict[str, dict[str, Any]]:
    """Every task as this one master holds it, without a ReadIndex round (less the one field,
    ``effective_priority``, that reads this master's clock)."""
    with Client(url) as client:
        tasks = {t.id: dict(t.raw) for t in client.iter_tasks(limit=1000, consistency="stale")}
    for task in tasks.values():
        task.pop("effective_priority", None)
    return tasks


def stale_stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(url + "/api/v1/queue/stats", params=STALE).json()
    # Everything but the rates and ages, which read this master's clock.
    return {k: v for k, v in stats.items() if k not in ("finished_per_s_1m", "oldest_wait_s")}


def assert_same_on_every_master(cluster: Cluster, names: list[str]) -> dict[str, dict[str, Any]]:
    """Digest, every task and the queue totals agree on ``names``; returns the tasks."""
    cluster.wait_converged(names)
    views = {n: (stale_tasks(cluster.url(n)), stale_stats(cluster.url(n))) for n in names}
    first = names[0]
    for name in names[1:]:
        assert views[name][0].keys() == views[first][0].keys(), f"{name} vs {first}: task ids"
        for task_id, task in views[first][0].items():
            assert views[name][0][task_id] == task, f"{name} vs {first}: {task_id}"
        assert views[name][1] == views[first][1], f"{name} vs {first}: queue stats"
    return views[first][0]


def attempts_are_fenced(task: dict[str, Any]) -> None:
    history = task["attempt_history"]
    assert [a["status"] for a in history].count("completed") <= 1, task
    tokens = [a["fencing_token"] for a in history]
    assert all(a < b for a, b in itertools.pairwise(tokens)), task
    assert [a["attempt"] for a in history] == list(range(1, len(history) + 1)), task


def member_roles(status: dict[str, Any]) -> dict[str, str]:
    return {m["id"]: m["role"] for m in status["members"]}


def wait_caught_up(cluster: Cluster, leader: str, name: str, timeout_s: float = 20.0) -> None:
    """Wait until the leader's match index for ``name`` reaches its commit index."""

    def caught_up() -> bool:
        status = cluster.status(leader)
        if status is None:
            return False
        match = {m["id"]: m["match_index"] for m in status["members"]}.get(name)
        return bool(match and match >= status["commit_index"])

    wait_until(caught_up, timeout_s, f"{name} caught up with {leader}")


def wait_promoted(cluster: Cluster, leader: str, name: str, timeout_s: float = 30.0) -> None:
    """Wait until the leader has made the learner ``name`` a voter, as it does by itself once
    the learner keeps up (asking for it meanwhile races the writes still arriving)."""

    def voter() -> bool:
        status = cluster.status(leader)
        return status is not None and member_roles(status).get(name) == "voter"

    wait_until(voter, timeout_s, f"{leader} promoting {name}")


class Writer(threading.Thread):
    """Submits one task at a time through the SDK until stopped; records what was acked."""

    def __init__(self, urls: str) -> None:
        super().__init__(name="writer", daemon=True)
        self.urls = urls
        self.acked: list[str] = []
        self.errors: list[Exception] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with Client(self.urls) as client:
            while not self._halt.is_set():
                try:
                    self.acked.append(client.submit("true").id)
                except Exception as exc:  # recorded, asserted on at the end
                    self.errors.append(exc)
                time.sleep(0.02)

    def acked_after(self, count: int, more: int = 5, timeout_s: float = 20.0) -> None:
        """Wait until ``more`` writes beyond ``count`` were acknowledged."""
        wait_until(lambda: len(self.acked) >= count + more, timeout_s, "writes acknowledged")

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)
        assert not self.is_alive()


def many_commands(url: str, count: int, threads: int = 8) -> list[str]:
    """``count`` single submits (one log entry each) straight to the leader, in parallel."""

    def chunk(n: int) -> list[str]:
        with httpx.Client(timeout=30) as http:
            ids = []
            for _ in range(n):
                response = http.post(url + "/api/v1/tasks", json={"command": "true"})
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
            return ids

    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(chunk, [count // threads] * threads)
    return [task_id for part in parts for task_id in part]


# -- 1. failover under load --------------------------------------------------------------------


def test_leader_killed_twice_under_load_loses_nothing_and_repeats_nothing(
    procs: Processes, tmp_path: Path
) -> None:
    cluster = procs.cluster(3)
    marks = tmp_path / "ran"
    workers = [procs.worker(w, cluster.urls, "--slots", "4") for w in ("w1", "w2")]
    acked: list[str] = []
    kills: list[str] = []

    def chaos() -> None:
        """Kill -9 the leader once 400, then 1,100 tasks are acked; restart it soon after."""
        for threshold in (400, 1100):

            def reached(t: int = threshold) -> bool:
                return len(acked) >= t

            wait_until(reached, 60, f"{threshold} acks")
            leader = cluster.leader()
            cluster.kill9(leader)
            kills.append(leader)
            time.sleep(1.0)
            cluster.start(leader)

    killer = threading.Thread(target=chaos, name="chaos", daemon=True)
    killer.start()
    with Client(cluster.urls) as client:
        for batch in range(20):
            specs = [
                {"command": f"echo {i}:$AGENTFLOW_ATTEMPT >> {marks}"}
                for i in range(batch * 100, batch * 100 + 100)
            ]
            acked += client.submit_many(specs)
            time.sleep(0.05)
        killer.join(timeout=90)
        assert not killer.is_alive() and len(kills) == 2
        assert len(set(acked)) == 2000

        def all_done() -> bool:
            return bool(client.queue_stats()["totals"]["completed"] >= 2000)

        wait_until(all_done, 120, "2,000 tasks completed")
    for worker in workers:
        worker.terminate()
    tasks = assert_same_on_every_master(cluster, list(cluster.masters))
    # Every acked task completed, and retried batches made no second copies.
    assert tasks.keys() == set(acked)
    assert {t["status"] for t in tasks.values()} == {"completed"}
    for task in tasks.values():
        attempts_are_fenced(task)
    # No attempt ran to its end twice on the workers either.
    runs = collections.Counter(marks.read_text().split())
    assert {key.split(":")[0] for key in runs} == {str(i) for i in range(2000)}
    assert [key for key, n in runs.items() if n > 1] == []


# -- 2. partition ------------------------------------------------------------------------------


@pytest.mark.raft_only  # partitions cut Raft peer links
def test_partitioned_leader_steps_down_refuses_writes_and_catches_up(procs: Processes) -> None:
    cluster = procs.cluster(3, proxied=True)
    assert cluster.proxy is not None
    old = cluster.leader()
    others = [n for n in cluster.masters if n != old]
    with Client(",".join(cluster.url(n) for n in others)) as client:
        before = client.submit_many({"command": "true"} for _ in range(20))
        term = cluster.status(old)["term"]  # type: ignore[index]
        cluster.proxy.isolate(old)
        # A write sent to the old leader right away: it may still think it leads, but the
        # command can never commit; the client must not be told it was created.
        with ThreadPoolExecutor(1) as pool:
            early = pool.submit(
                httpx.post,
                cluster.url(old) + "/api/v1/tasks",
                json={"command": "true", "idempotency_key": "sent-to-the-old-leader"},
                timeout=20,
            )
            # Check-quorum: no majority heard within an election timeout, so it steps down.
            wait_until(lambda: (cluster.status(old) or {}).get("role") != "leader", 10, "step down")
            new = cluster.leader(among=others)
            assert new != old
            during = client.submit_many({"command": "true"} for _ in range(30))
            late = httpx.post(
                cluster.url(old) + "/api/v1/tasks",
                json={"command": "true", "idempotency_key": "sent-to-the-old-leader-2"},
                timeout=20,
            )
            for response in (early.result(), late):
                assert response.status_code == 503, response.text
                assert response.headers["content-type"] == PROBLEM_JSON
            # Linearizable reads cannot be served; stale ones can, from what it has.
            read = httpx.get(cluster.url(old) + "/api/v1/tasks", timeout=20)
            assert read.status_code == 503
            assert read.headers["content-type"] == PROBLEM_JSON
            assert "leader_id" in read.json()
            stale = httpx.get(cluster.url(old) + "/api/v1/tasks", params=STALE, timeout=5)
            assert stale.status_code == 200
            assert {t["id"] for t in stale.json()["tasks"]}.isdisjoint(during)
        cluster.proxy.heal_all()

        def caught_up() -> bool:
            mine, theirs = cluster.status(old), cluster.status(new)
            return bool(mine and theirs and mine["applied_index"] >= theirs["commit_index"])

        wait_until(caught_up, 20, f"{old} caught up")
        tasks = assert_same_on_every_master(cluster, list(cluster.masters))
        assert set(before) | set(during) == tasks.keys()
        assert all(
            t["idempotency_key"] is None or "old-leader" not in t["idempotency_key"]
            for t in tasks.values()
        )
        # Pre-vote: rejoining did not unseat the new leader.
        assert cluster.leader() == new
        assert cluster.status(new)["term"] > term  # type: ignore[index]


@pytest.mark.raft_only  # partitions cut Raft peer links
def test_follower_cut_off_names_the_leader_it_last_knew(procs: Processes) -> None:
    cluster = procs.cluster(3, proxied=True)
    assert cluster.proxy is not None
    leader = cluster.leader()
    follower = next(n for n in cluster.masters if n != leader)
    cluster.proxy.isolate(follower)
    read = httpx.get(cluster.url(follower) + "/api/v1/tasks", timeout=20)
    assert read.status_code == 503
    assert read.headers["content-type"] == PROBLEM_JSON
    problem = read.json()
    assert problem["leader_id"] == leader, problem
    assert problem["leader_url"] == cluster.url(leader), problem
    cluster.proxy.heal_all()


# -- 3. whole-cluster restarts -----------------------------------------------------------------


def test_all_masters_stopped_and_started_lose_nothing(procs: Processes) -> None:
    cluster = procs.cluster(3)
    worker = procs.worker("w1", cluster.urls, "--slots", "4")
    with Client(cluster.urls) as client:
        done = client.submit_many({"command": f"echo {i}"} for i in range(100))
        wait_until(lambda: client.queue_stats()["totals"]["completed"] == 100, 60, "100 done")
        worker.terminate()
        queued = client.submit_many({"command": f"echo q{i}"} for i in range(100))
    before = assert_same_on_every_master(cluster, list(cluster.masters))
    for how in ("sigterm", "kill9"):
        for name in cluster.masters:
            if how == "sigterm":
                # uvicorn re-raises the signal once it has shut down gracefully.
                code = cluster.terminate(name)
                assert code in (0, -signal.SIGTERM), cluster.masters[name].proc.log()  # type: ignore[union-attr]
            else:
                cluster.kill9(name)
        for name in cluster.masters:
            cluster.start(name)
        cluster.leader()
        after = assert_same_on_every_master(cluster, list(cluster.masters))
        assert after == before, how
    assert [before[i]["status"] for i in done] == ["completed"] * 100
    assert [before[i]["status"] for i in queued] == ["queued"] * 100
    procs.worker("w2", cluster.urls, "--slots", "4")
    with Client(cluster.urls) as client:
        assert client.wait(queued[-1], timeout_s=30).ok
        assert client.output(queued[-1])["stdout"] == "q99\n"


# -- 4. membership -----------------------------------------------------------------------------


@pytest.mark.raft_only  # Raft membership
def test_learner_joins_is_promoted_and_a_member_is_removed_while_serving(
    procs: Processes,
) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    writer = Writer(cluster.urls)
    writer.start()
    try:
        writer.acked_after(0)
        m4 = cluster.add("m4")
        cluster.start("m4", "--join")
        body = {"id": "m4", "raft_address": m4.raft_address, "api_url": m4.url, "voter": False}
        added = httpx.post(cluster.url(leader) + MEMBERS, json=body, timeout=15)
        assert added.status_code == 200, added.text
        assert member_roles(added.json())["m4"] == "learner"
        writer.acked_after(len(writer.acked))

        wait_caught_up(cluster, leader, "m4")
        wait_promoted(cluster, leader, "m4")
        writer.acked_after(len(writer.acked))
        gone = next(n for n in ("m1", "m2", "m3") if n != leader)
        removed = httpx.delete(cluster.url(leader) + f"{MEMBERS}/{gone}", timeout=15)
        assert removed.status_code == 200, removed.text
        assert gone not in member_roles(removed.json())
        cluster.kill9(gone)
        writer.acked_after(len(writer.acked))
    finally:
        writer.stop()
    assert writer.errors == []
    rest = [n for n in cluster.masters if n != gone]
    tasks = assert_same_on_every_master(cluster, rest)
    assert set(writer.acked) <= tasks.keys()
    assert set(member_roles(cluster.status("m4")).values()) >= {"voter"}  # type: ignore[arg-type]


@pytest.mark.raft_only  # Raft membership, --join
def test_removed_follower_wiped_and_readded_with_join_rejoins(procs: Processes) -> None:
    cluster = procs.cluster(3, "--snapshot-every", "50")
    leader = cluster.leader()
    follower = next(n for n in cluster.masters if n != leader)
    removed = httpx.delete(cluster.url(leader) + f"{MEMBERS}/{follower}", timeout=15)
    assert removed.status_code == 200, removed.text
    cluster.kill9(follower)
    acked = many_commands(cluster.url(leader), 2200)
    status = cluster.status(leader)
    assert status is not None and status["snapshot_index"] > 2000  # the log is compacted
    shutil.rmtree(cluster.masters[follower].data_dir)
    writer = Writer(cluster.urls)
    writer.start()
    try:
        cluster.start(follower, "--join")
        me = cluster.masters[follower]
        body = {"id": follower, "raft_address": me.raft_address, "api_url": me.url}
        added = httpx.post(cluster.url(leader) + MEMBERS, json=body | {"voter": False}, timeout=15)
        assert added.status_code == 200, added.text
        wait_until(lambda: "installing snapshot" in me.proc.log(), 20, "snapshot installed")  # type: ignore[union-attr]
        wait_caught_up(cluster, leader, follower)
        wait_promoted(cluster, leader, follower)
        writer.acked_after(len(writer.acked))
    finally:
        writer.stop()
    assert writer.errors == []
    tasks = assert_same_on_every_master(cluster, list(cluster.masters))
    assert set(acked) | set(writer.acked) == tasks.keys()


# -- 5. peers that do not belong ---------------------------------------------------------------


@pytest.mark.raft_only  # the Raft peer handshake
def test_peers_with_the_wrong_token_or_cluster_id_are_refused(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    before = cluster.status(leader)
    assert before is not None
    intruders = {
        "m4": ("--cluster-token", "not-the-token"),
        "m5": ("--cluster-id", "another-cluster"),
    }
    for name, flags in intruders.items():
        cluster.add(name, *flags)
        cluster.start(name, "--log-level", "info")
    wrong_id = cluster.masters["m5"]
    # The cluster side refuses a hello from another cluster and says why.
    wait_until(
        lambda: any(
            "another-cluster" in cluster.masters[n].proc.log()  # type: ignore[union-attr]
            for n in ("m1", "m2", "m3")
        ),
        15,
        "a master logged the foreign cluster id",
    )
    # A client that cannot prove the token is refused by the cluster side too.
    assert raw_handshake(cluster.masters[leader].raft_port, leader, b"not-the-token") == "closed"
    wait_until(
        lambda: "wrong cluster token" in cluster.masters[leader].proc.log(),  # type: ignore[union-attr]
        10,
        "the leader logged the wrong token",
    )
    # The token-less intruder finds the cluster cannot prove the token either.
    wait_until(
        lambda: "failed authentication" in cluster.masters["m4"].proc.log(),  # type: ignore[union-attr]
        15,
        "m4 logged the failed authentication",
    )
    time.sleep(3.0)  # several election timeouts for the intruders to campaign in
    after = cluster.status(leader)
    assert after is not None
    assert after["leader_id"] == leader and after["term"] == before["term"]
    assert member_roles(after) == member_roles(before)
    for name in intruders:
        view = cluster.status(name)
        assert view is not None and view["leader_id"] != leader, view
    assert wrong_id.alive()
    with Client(cluster.urls) as client:
        assert client.submit("true").status == "queued"


def raw_handshake(port: int, node_id: str, token: bytes) -> str:
    """Speak the peer handshake with ``token`` as a non-member; what came back."""
    import socket

    from agentflow.cluster import peerwire

    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        hello = peerwire.encode_frame(
            {
                "k": "hello",
                "v": peerwire.VERSION,
                "cluster": "agentflow",
                "from": "intruder",
                "to": node_id,
                "nonce": b"n" * 16,
                "info": {},
            }
        )
        sock.sendall(hello)
        (length,) = peerwire.LEN.unpack(sock.recv(4, socket.MSG_WAITALL))
        challenge = sock.recv(length, socket.MSG_WAITALL)
        key = peerwire.session_key(token, hello[4:], challenge)
        sock.sendall(peerwire.Sealer(key, peerwire.CLIENT).seal({"k": "auth"}))
        try:
            return "closed" if sock.recv(1) == b"" else "open"
        except ConnectionResetError:
            return "closed"


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_cluster_status_prints_the_leader(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    follower = next(n for n in cluster.masters if n != leader)
    cli = str(Path(sys.executable).parent / "agentflow")
    shown = subprocess.run(
        [cli, "cluster", "status", "--local", "--master-url", cluster.url(follower)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    first = shown.stdout.splitlines()[0]
    assert first.startswith(f"leader {leader} ({cluster.url(leader)})"), shown.stdout
    assert f"answered by {follower}" in first
    for name in cluster.masters:
        assert name in shown.stdout
