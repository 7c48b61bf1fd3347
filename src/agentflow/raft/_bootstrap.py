"""Bootstrap: how a fresh cluster's first members get their configuration (etcd's Bootstrap).

The initial voters are written into the log, as committed CONF_CHANGE entries (ADD_VOTER, term
1) at indexes 1..n, identical on every founding member. Membership then lives only in the log
(and in snapshots of it), so any node that replays the log from index 1 — a founding member on
restart, or a node that joins later with an empty storage and catches up by AppendEntries —
passes through exactly the leader's configuration at every index. A configuration that lived
only beside the log (a ConfState at index 0) would be invisible to such a joiner, which would
then replay the later changes over an empty configuration and could elect itself alone.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentflow.raft._storage import MemoryStorage
from agentflow.raft._types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    NodeId,
)

# The term of the bootstrap entries. No leader ever holds it, so every election is at term 2
# or later and the entries can never conflict with entries a leader appends.
BOOTSTRAP_TERM = 1


def bootstrap_entries(voters: Iterable[NodeId]) -> list[Entry]:
    """The committed prefix every founding member writes: one ADD_VOTER per voter, sorted so
    that all members write byte-identical entries (log matching holds from index 1)."""
    ids = sorted(set(voters))
    if not ids:
        raise ValueError("bootstrap needs at least one voter")
    return [
        Entry(
            term=BOOTSTRAP_TERM,
            index=index,
            type=EntryType.CONF_CHANGE,
            data=ConfChange(type=ConfChangeType.ADD_VOTER, node_id=node_id).encode(),
        )
        for index, node_id in enumerate(ids, start=1)
    ]


def bootstrap(storage: MemoryStorage, voters: Iterable[NodeId]) -> None:
    """Make ``storage`` the durable state of a founding member of a cluster of ``voters``.

    Every founding member calls this with the same voters on its own empty storage; a node
    that joins an existing cluster does not call it at all (it starts from an empty
    ``MemoryStorage()`` and learns the membership from the log or a snapshot).

    The entries are committed (hard state term 1, commit n) but not applied: the first Ready
    of a RaftNode over this storage hands them to the shell as committed entries, and the shell
    applies them like any conf change (``apply_conf_change``; re-adding a voter is a no-op).
    The storage's ConfState is set to the voters as well, so the node knows its peers before
    that first Ready, as a shell that had applied the entries would have recorded. A node does
    not campaign while a committed conf change is unapplied, so it campaigns only after that
    Ready is handled.
    """
    entries = bootstrap_entries(voters)
    hard_state, conf_state = storage.initial_state()
    empty = (
        storage.last_index() == 0
        and storage.snapshot_index == 0
        and hard_state == HardState()
        and not conf_state.voters
        and not conf_state.learners
    )
    if not empty:
        raise ValueError("bootstrap needs an empty storage (this node already has state)")
    storage.append(entries)
    storage.set_hard_state(HardState(term=BOOTSTRAP_TERM, commit=len(entries)))
    voter_ids = frozenset(ConfChange.decode(e.data).node_id for e in entries)
    storage.set_conf_state(ConfState(voters=voter_ids))
