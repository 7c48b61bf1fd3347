"""Which peers a node admits while conf changes are appended but not yet applied.

Found by the chaos suite: a follower that appended "remove m2" and then "add m2" (m2 rejoining)
before applying either forgot the pending add when the remove applied, and refused m2's links
until the add applied; if m2 had meanwhile become leader, the follower never learned the commit
that would apply the add, and stayed behind for good.
"""

from __future__ import annotations

from agentflow.cluster.membership import Membership
from agentflow.raft import ConfChange, ConfChangeType, ConfState, Entry, EntryType


def _change(index: int, kind: ConfChangeType, node: str) -> tuple[Entry, ConfChange]:
    change = ConfChange(type=kind, node_id=node)
    return Entry(term=2, index=index, type=EntryType.CONF_CHANGE, data=change.encode()), change


def _no_core() -> ConfState | None:
    return None


def test_a_readd_appended_after_a_remove_is_admitted_once_the_remove_applies() -> None:
    members = Membership("m1", join=False)
    removal, remove = _change(5, ConfChangeType.REMOVE_NODE, "m2")
    readd, add = _change(6, ConfChangeType.ADD_LEARNER, "m2")
    members.note_adding((removal, readd))
    members.apply(remove, removal.index)
    assert members.admits("m2", _no_core)  # the add at 6 is still to apply
    members.apply(add, readd.index)
    assert members.admits("m2", _no_core)  # now a member


def test_a_remove_applied_after_the_last_add_is_no_longer_admitted() -> None:
    members = Membership("m1", join=False)
    adding, add = _change(5, ConfChangeType.ADD_LEARNER, "m2")
    removal, remove = _change(6, ConfChangeType.REMOVE_NODE, "m2")
    members.note_adding((adding,))
    assert members.admits("m2", _no_core)
    members.apply(add, adding.index)
    members.note_adding((removal,))
    members.apply(remove, removal.index)
    assert not members.admits("m2", _no_core)
