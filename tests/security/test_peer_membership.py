"""Only members of the configuration reach the Raft core (issue 12, peers), no processes.

The transport asks :meth:`RaftLog.admits` at the handshake, and the node asks again for every
message it receives, so a link that outlived its member's removal carries nothing further.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.image import Member
from agentflow.cluster.node import RaftLog
from agentflow.errors import ConflictError
from agentflow.raft import ConfChangeType, Message, MessageType, StateRole
from agentflow.state import StateMachine


def _node(tmp_path: Path, **config: object) -> RaftLog:
    node = RaftLog(ClusterConfig(node_id="m1", data_dir=tmp_path, **config), StateMachine())  # type: ignore[arg-type]
    node.members = {n: Member(node_id=n, raft_address="127.0.0.1:1") for n in ("m1", "m2")}
    return node


def _heartbeat(from_: str) -> Message:
    return Message(type=MessageType.HEARTBEAT, from_=from_, to="m1", term=99)


def test_messages_from_outside_the_configuration_are_dropped(tmp_path: Path) -> None:
    node = _node(tmp_path, token="t")
    assert node.admits("m2")
    assert not node.admits("intruder") and not node.admits("m1")
    node._on_message(_heartbeat("intruder"))
    node._on_message(_heartbeat("m2"))
    assert [m.from_ for m in node._inbox] == ["m2"]
    node.members.pop("m2")  # removed: its link may still be up, its messages go nowhere
    node._on_message(_heartbeat("m2"))
    assert [m.from_ for m in node._inbox] == ["m2"]


def test_a_joining_node_takes_any_authenticated_peer_until_it_has_a_configuration(
    tmp_path: Path,
) -> None:
    node = _node(tmp_path, token="t", join=True)
    assert node.admits("m7")


def test_a_master_without_a_cluster_token_refuses_to_add_members(tmp_path: Path) -> None:
    node = _node(tmp_path)
    node.role = StateRole.LEADER
    with pytest.raises(ConflictError, match="--cluster-token"):
        asyncio.run(node.change_membership(ConfChangeType.ADD_LEARNER, "m3", "127.0.0.1:2"))
