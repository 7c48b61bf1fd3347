"""``agentflow cluster upgrade-plan`` against a live cluster: the order from the leader's view,
and a one-line refusal while a member is down (stopping another could lose the quorum)."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.procs import BIN, Processes, wait_until

pytestmark = pytest.mark.raft_only  # the plan orders Raft members by quorum


def _plan(urls: str, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "agentflow"), "cluster", "upgrade-plan", "--master-url", urls, *more],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_plan_follows_the_leader_and_is_refused_while_a_member_is_down(
    procs: Processes,
) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    wait_until(lambda: _plan(cluster.urls).returncode == 0, 30, "every member linked")
    plan = json.loads(_plan(cluster.urls, "-o", "json").stdout)
    followers = sorted(set(cluster.masters) - {leader})
    assert plan["leader_id"] == leader and plan["order"] == [*followers, leader]
    moves = [s for s in plan["steps"] if s["action"] == "transfer-leadership"]
    assert [m["command"].split()[3] for m in moves] == [followers[0]]
    down = followers[-1]
    cluster.kill9(down)
    refused: list[subprocess.CompletedProcess[str]] = []

    def is_refused() -> bool:
        refused[:] = [_plan(cluster.urls)]
        return refused[0].returncode != 0

    wait_until(is_refused, 30, f"the plan refused with {down} down")
    lines = refused[0].stderr.strip().splitlines()
    assert lines == [f"error: member {down} is down: bring it back before an upgrade"]
