"""A 3-master cluster's /metrics: the leader shows each follower's lag and last contact, every
master its term and whether it leads, and promtool accepts them all."""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import pytest

from tests.e2e.procs import Processes, wait_until


def _sample(text: str, name: str, labels: str = "") -> float | None:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return None if match is None else float(match.group(1))


def test_leader_exposes_follower_lag_and_every_master_its_role(procs: Processes):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is absent (Debian package prometheus; `make sysdeps` installs it)")
    cluster = procs.cluster(3)
    leader = cluster.leader()
    followers = sorted(n for n in cluster.masters if n != leader)
    with httpx.Client(timeout=10) as client:

        def scrape(name: str) -> str:
            return client.get(f"{cluster.url(name)}/metrics").text

        def lag_shown() -> bool:
            text = scrape(leader)
            return all(
                _sample(text, "agentflow_raft_follower_lag_entries", f'{{follower="{f}"}}')
                is not None
                for f in followers
            )

        wait_until(lag_shown, what="the leader to show both followers' lag")

        # On a SQL store each master learns the others from their member rows, read at each
        # lease renewal or check: not all at the same moment.
        def all_members_seen() -> bool:
            return all(
                _sample(scrape(name), "agentflow_raft_members") == 3.0 for name in cluster.masters
            )

        wait_until(all_members_seen, what="every master to count three members")
        texts = {name: scrape(name) for name in cluster.masters}
    terms = {_sample(text, "agentflow_raft_term") for text in texts.values()}
    assert len(terms) == 1 and next(iter(terms)) is not None  # one term, agreed
    for name, text in texts.items():
        assert _sample(text, "agentflow_raft_is_leader") == (1.0 if name == leader else 0.0)
        assert _sample(text, "agentflow_raft_has_leader") == 1.0
        assert _sample(text, "agentflow_raft_members") == 3.0
        done = subprocess.run(
            [promtool, "check", "metrics"],
            input=text,
            check=False,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stdout + done.stderr
    for follower in followers:  # only the leader knows the followers' progress
        assert "agentflow_raft_follower_lag_entries{" not in texts[follower]
        assert (
            _sample(
                texts[leader],
                "agentflow_raft_follower_last_contact_seconds",
                f'{{follower="{follower}"}}',
            )
            is not None
        )
    assert sum(_sample(t, "agentflow_raft_elections_total") or 0.0 for t in texts.values()) >= 1
