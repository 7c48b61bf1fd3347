"""``agentflow cluster upgrade-plan``'s order, from a leader's status: followers first, one at a
time, each waited on; leadership moved to an upgraded follower before the leader restarts."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.cli.upgrade import plan_steps
from agentflow.errors import ConflictError

URL = "http://127.0.0.1:6767"


def _status(leader: str = "m2", down: str | None = None) -> dict[str, Any]:
    members = [
        {"id": nid, "link": "down" if nid == down else ("self" if nid == leader else "up")}
        for nid in ("m1", "m2", "m3")
    ]
    return {"role": "leader", "leader_id": leader, "members": members}


def test_followers_first_then_leadership_moves_then_the_leader() -> None:
    steps = [(s.member, s.action) for s in plan_steps(_status("m2"), URL)]
    assert steps == [
        ("m1", "stop"),
        ("m1", "start"),
        ("m1", "wait"),
        ("m3", "stop"),
        ("m3", "start"),
        ("m3", "wait"),
        ("m2", "transfer-leadership"),
        ("m2", "stop"),
        ("m2", "start"),
        ("m2", "wait"),
    ]
    commands = [s.command for s in plan_steps(_status("m2"), URL)]
    assert commands[2] == f"agentflow cluster wait-caught-up m1 --master-url {URL}"
    assert commands[6] == f"agentflow cluster transfer-leader m1 --master-url {URL}"


def test_a_single_master_is_restarted_alone() -> None:
    status = {"role": "leader", "leader_id": "m1", "members": [{"id": "m1", "link": "self"}]}
    assert [s.action for s in plan_steps(status, URL)] == ["stop", "start", "wait"]


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (_status("m2", down="m3"), "member m3 is down"),
        ({"role": "follower", "leader_id": None, "members": []}, "no leader answered"),
    ],
)
def test_no_plan_while_a_member_is_down_or_no_leader_answers(
    status: dict[str, Any], why: str
) -> None:
    with pytest.raises(ConflictError, match=why):
        plan_steps(status, URL)
