"""A membership change on a real cluster: a master removed, then back with an empty data
directory as a learner that the leader promotes once it has caught up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentflow.testing.chaos.cluster import ChaosCluster, wait_for
from agentflow.testing.chaos.netns import Lab
from tests.chaos.labtools import in_host, make_lab

pytestmark = pytest.mark.slow

VOTERS_TIMEOUT_S = 30.0


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(tmp_path)


def test_a_removed_master_rejoins_as_a_voter_and_the_cluster_converges(
    lab: Lab, tmp_path: Path
) -> None:
    lab.add_host("ctl")
    cluster = ChaosCluster(lab, tmp_path / "cluster", masters=3, workers=0, small_disk_master=None)

    def body() -> tuple[set[str], set[str], str]:
        cluster.start()
        old_dir = cluster.masters["m2"].data_dir
        cluster.remove("m2")
        without = cluster.voters()
        assert not cluster.masters["m2"].alive() and not old_dir.exists()
        cluster.rejoin("m2")
        assert cluster.masters["m2"].data_dir != old_dir
        wait_for(lambda: cluster.voters() == set(cluster.masters), VOTERS_TIMEOUT_S, "3 voters")
        return without, cluster.voters(), cluster.wait_converged()

    try:
        without, voters, digest = in_host(lab, "ctl", body)
    finally:
        cluster.close()
    assert without == {"m1", "m3"}
    assert voters == {"m1", "m2", "m3"} and digest
