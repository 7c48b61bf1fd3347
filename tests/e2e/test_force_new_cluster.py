"""Lost quorum: two of three masters destroyed, the survivor forced into a one-member cluster.

Its log and state are kept (every entry it holds counts as committed), its membership is
rewritten to itself durably (a restart without the flag stays a cluster of one), and new
members join with the ordinary --join flow.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import Processes
from tests.e2e.test_backup_restore import join
from tests.e2e.test_cluster import Writer, member_roles

pytestmark = pytest.mark.raft_only  # --force-new-cluster rebuilds a Raft cluster


def test_survivor_forced_alone_keeps_every_acknowledged_task_and_grows_again(
    procs: Processes, tmp_path: Path
) -> None:
    cluster = procs.cluster(3)
    cluster.leader()
    writer = Writer(cluster.urls)
    writer.start()
    try:
        writer.acked_after(0, more=30)
    finally:
        writer.stop()
    assert writer.errors == []
    acked = list(writer.acked)
    for name in ("m2", "m3"):  # destroyed: killed, their data gone
        cluster.kill9(name)
        shutil.rmtree(cluster.masters[name].data_dir)
    cluster.kill9("m1")
    del cluster.masters["m2"], cluster.masters["m3"]

    cluster.start("m1", "--force-new-cluster")
    assert cluster.leader(["m1"]) == "m1"
    cluster.terminate("m1")
    cluster.start("m1")  # without the flag: still a cluster of itself alone
    assert cluster.leader(["m1"]) == "m1"
    assert set(member_roles(cluster.status("m1") or {})) == {"m1"}
    url = cluster.url("m1")
    for task_id in acked:
        got = httpx.get(f"{url}/api/v1/tasks/{task_id}", timeout=5)
        assert got.status_code == 200, (task_id, got.text)

    join(cluster, "m1", "m4", tmp_path)
    join(cluster, "m1", "m5", tmp_path)
    submitted = httpx.post(f"{url}/api/v1/tasks", json={"command": "true"}, timeout=15)
    assert submitted.status_code == 201, submitted.text
    cluster.wait_converged()
    for name in ("m4", "m5"):
        got = httpx.get(f"{cluster.url(name)}/api/v1/tasks/{submitted.json()['id']}", timeout=5)
        assert got.status_code == 200, got.text
    assert set(member_roles(cluster.status("m1") or {})) == {"m1", "m4", "m5"}
