"""Backing up a running cluster under write load and restoring it into a new one.

The leader images its state at its applied index; the restored cluster starts from exactly that
state (same digest at the backup's index), holds every task acknowledged before the backup was
asked for, gets a new cluster uid (so members of the backed-up cluster are refused), and grows
with the ordinary ``--join`` flow.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from agentflow.cluster.backup import read_backup
from agentflow.testing.ports import free_port
from tests.e2e.procs import BIN, Cluster, ClusterMaster, Processes, wait_until
from tests.e2e.test_cluster import Writer, member_roles, wait_caught_up, wait_promoted

pytestmark = pytest.mark.raft_only  # backup and restore of the Raft files, --join

TOKEN = "e2e-cluster-token"  # the same secret as the backed-up cluster
MEMBERS = "/api/v1/cluster/members"


def agentflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "agentflow"), *args], capture_output=True, text=True, timeout=60, check=False
    )


def join(cluster: Cluster, leader: str, name: str, root: Path) -> None:
    """Start ``name`` empty with --join and add it: a learner the leader promotes."""
    master = ClusterMaster(
        name=name,
        port=free_port(),
        raft_port=free_port(),
        data_dir=root / f"{name}-data",
        peers=f"{leader}=127.0.0.1:{cluster.masters[leader].raft_port}",
    )
    cluster.masters[name] = master
    cluster.start(name, "--join")
    body = {"id": name, "raft_address": master.raft_address, "api_url": master.url}
    added = httpx.post(cluster.url(leader) + MEMBERS, json=body, timeout=15)
    assert added.status_code == 200, added.text
    wait_caught_up(cluster, leader, name)
    wait_promoted(cluster, leader, name)


def test_backup_under_load_restores_into_a_new_cluster_that_refuses_the_old(
    procs: Processes, tmp_path: Path
) -> None:
    old = procs.cluster(3)
    old.leader()
    writer = Writer(old.urls)
    writer.start()
    try:
        writer.acked_after(0, more=20)
        before = list(writer.acked)  # acknowledged before the backup was asked for
        backup = tmp_path / "cluster.backup"
        saved = agentflow("cluster", "backup", str(backup), "--master-url", old.urls)
        assert saved.returncode == 0, saved.stderr
        assert saved.stdout.startswith("backed up index "), saved.stdout
        writer.acked_after(len(writer.acked), more=10)  # and the cluster keeps writing
    finally:
        writer.stop()
    assert writer.errors == []
    header, _body = read_backup(backup)
    assert header.cluster_uid and header.index > 0
    for name in old.masters:
        old.kill9(name)

    # Restore m1 at the old m1's addresses (the old cluster is gone), then join two new members.
    root = tmp_path / "restored"
    fresh = Processes(root)
    try:
        root.mkdir()
        new = Cluster(fresh, token=TOKEN)
        was = old.masters["m1"]
        m1 = ClusterMaster(name="m1", port=was.port, raft_port=was.raft_port, data_dir=root / "d1")
        new.masters["m1"] = m1
        restored = agentflow(
            "cluster", "restore", str(backup), "--data-dir", str(m1.data_dir), "--node-id", "m1",
            "--raft-address", m1.raft_address, "--api-url", m1.url,
        )  # fmt: skip
        assert restored.returncode == 0, restored.stderr
        new.start("m1")
        assert new.leader() == "m1"
        # Before it proposed anything, the restored m1 held the backup's state at its index.
        assert (
            f"restored state at index {header.index}: digest {header.state_digest}, the backup's"
            in m1.proc.log()
        )  # type: ignore[union-attr]
        join(new, "m1", "m2", root)
        join(new, "m1", "m3", root)
        new.wait_converged()
        for task_id in before:
            got = httpx.get(f"{m1.url}/api/v1/tasks/{task_id}", timeout=5)
            assert got.status_code == 200, (task_id, got.text)

        # The old m2, restarted on its data, dials m1's address: the restored m1 refuses it.
        old.start("m2")
        wait_until(lambda: "cluster uid" in (m1.proc.log() if m1.proc else ""), 15, "refusal")
        assert set(member_roles(new.status("m1") or {"members": []})) == {"m1", "m2", "m3"}
        m2_view = old.status("m2")
        assert m2_view is not None and m2_view["leader_id"] is None

        submitted = httpx.post(f"{m1.url}/api/v1/tasks", json={"command": "true"}, timeout=15)
        assert submitted.status_code == 201, submitted.text
        new.wait_converged()
    finally:
        fresh.close()
