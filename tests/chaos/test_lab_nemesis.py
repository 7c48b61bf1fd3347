"""The nemesis on a real cluster: each kind of fault applies, heals, and the masters converge."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentflow.client import Client
from agentflow.testing.chaos.cluster import ChaosCluster, wait_for
from agentflow.testing.chaos.nemesis import LEADER, Fault, Nemesis
from agentflow.testing.chaos.netns import Lab
from tests.chaos.labtools import in_host, make_lab

pytestmark = pytest.mark.slow

CONVERGE_TIMEOUT_S = 60.0
VOTERS_TIMEOUT_S = 30.0
TASK_TIMEOUT_S = 30.0

# Short faults, one after the other, covering every kind; run at once (times are the
# schedule's, the nemesis keeps them).
FAULTS = [
    Fault(at_s=0.0, kind="isolate-leader", targets=(LEADER,), heal_after_s=1.5),
    Fault(at_s=0.5, kind="pause-worker", targets=("w1",), heal_after_s=1.0),
    Fault(at_s=2.0, kind="kill-master", targets=("m1",), heal_after_s=1.0),
    Fault(at_s=2.0, kind="loss", targets=("w2",), params={"percent": 30}, heal_after_s=1.0),
    Fault(at_s=3.5, kind="disk-full", targets=("m3",), heal_after_s=1.0),
    Fault(at_s=3.5, kind="delay", targets=("m2",), params={"ms": 100}, heal_after_s=1.0),
    Fault(at_s=5.0, kind="kill-worker", targets=("w2",), heal_after_s=1.0),
    Fault(
        at_s=7.0,
        kind="partition-majority",
        targets=("m1",),
        params={"with_minority": ["w1"], "with_majority": ["w2"]},
        heal_after_s=1.0,
    ),
    Fault(
        at_s=8.5,
        kind="bridge",
        targets=("m2",),
        params={"halves": [["m1"], ["m3"]]},
        heal_after_s=1.0,
    ),
    Fault(at_s=10.0, kind="one-way", targets=(LEADER,), heal_after_s=1.0),
    Fault(at_s=11.5, kind="pause-master", targets=("m3",), heal_after_s=1.0),
    Fault(at_s=11.5, kind="isolate-worker", targets=("w1",), heal_after_s=1.0),
    Fault(at_s=13.0, kind="transfer-leader", targets=(LEADER,), params={"to": "best"}),
]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from make_lab(tmp_path)


def test_every_fault_applies_heals_and_the_cluster_converges(lab: Lab, tmp_path: Path) -> None:
    lab.add_host("ctl")
    cluster = ChaosCluster(lab, tmp_path / "cluster", masters=3, workers=2, disk_mib=32)
    lines: list[str] = []

    def body() -> Nemesis:
        cluster.start()
        nemesis = Nemesis(cluster, lab, FAULTS, lines.append)
        nemesis.run(threading.Event())
        # Every fault healed itself on time: nothing is left for heal_all to sweep.
        members = [*cluster.masters.values(), *cluster.workers.values()]
        left = [*lab.faults.values(), *cluster.down(), *[m.name for m in members if m.paused]]
        assert cluster.disk is not None and not cluster.disk.filled
        assert not left, ("\n".join(lines), left)
        nemesis.heal_all()
        report = "\n".join(lines)
        assert all(a.error is None and a.heal_error is None for a in nemesis.applied), report
        assert not lab.faults and not cluster.down(), report
        cluster.wait_converged(CONVERGE_TIMEOUT_S)
        wait_for(lambda: cluster.voters() == set(cluster.masters), VOTERS_TIMEOUT_S, "3 voters")
        with Client(cluster.urls, retry_for_s=10) as client:
            task = client.submit("true")
            wait_for(lambda: client.get(task.id).status == "completed", TASK_TIMEOUT_S, "task")
        return nemesis

    try:
        nemesis = in_host(lab, "ctl", body)
    finally:
        cluster.close()
    report = "\n".join(lines)
    assert [a.fault for a in nemesis.applied] == FAULTS, report
    assert all(a.error is None and a.heal_error is None for a in nemesis.applied), report
    assert all(
        a.healed_s is not None for a in nemesis.applied if a.fault.kind != "transfer-leader"
    ), report
    assert nemesis.applied[0].targets != (LEADER,)  # resolved when it applied
