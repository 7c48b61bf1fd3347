"""raft.db: a Ready that only moves the commit index is not waited for, yet stays in order.

The leader's commit Ready follows every write; nothing depends on the commit index being on
disk (a lost one is learnt again), so the driver does not wait for that write. It still runs
on the store's one thread, after the writes handed over before it.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from agentflow.cluster.raftstore import RaftStore
from agentflow.raft import Entry, HardState


async def test_commit_only_write_is_not_waited_for_and_lands_in_order(tmp_path: Path) -> None:
    path = tmp_path / "raft.db"
    store = RaftStore(path)
    await store.open()
    await store.load(0)
    entries = [Entry(term=1, index=i, data=b"x") for i in (1, 2, 3)]
    await store.save(HardState(term=1, vote="a", commit=0), entries)
    gate = threading.Event()
    blocked = store._thread.run(gate.wait, 10.0)  # the disk is busy
    # Returns although the store's thread cannot run it yet: only the commit moved.
    await asyncio.wait_for(store.save(HardState(term=1, vote="a", commit=3), ()), 5.0)
    gate.set()
    await blocked
    await store.close()

    reopened = RaftStore(path)
    await reopened.open()
    hard, held = await reopened.load(0)
    await reopened.close()
    assert hard == HardState(term=1, vote="a", commit=3)
    assert [e.index for e in held] == [1, 2, 3]


async def test_a_new_vote_is_waited_for(tmp_path: Path) -> None:
    store = RaftStore(tmp_path / "raft.db")
    await store.open()
    await store.load(0)
    await store.save(HardState(term=1, vote="a", commit=0), ())
    gate = threading.Event()
    blocked = store._thread.run(gate.wait, 10.0)
    saving = asyncio.ensure_future(store.save(HardState(term=2, vote="b", commit=0), ()))
    await asyncio.sleep(0)
    assert not saving.done()  # a vote is durable before anything that depends on it
    gate.set()
    await blocked
    await saving
    await store.close()


async def test_a_commit_index_covering_a_membership_change_is_waited_for(tmp_path: Path) -> None:
    """``sync``: the Ready's ``sync_commit``; the followers are told only once it is on disk."""
    store = RaftStore(tmp_path / "raft.db")
    await store.open()
    await store.load(0)
    await store.save(HardState(term=1, vote="a", commit=0), ())
    gate = threading.Event()
    blocked = store._thread.run(gate.wait, 10.0)
    saving = asyncio.ensure_future(store.save(HardState(term=1, vote="a", commit=2), (), sync=True))
    await asyncio.sleep(0)
    assert not saving.done()
    gate.set()
    await blocked
    await saving
    hard, _ = await store.load(0)  # written at once, not held for the next write
    await store.close()
    assert hard == HardState(term=1, vote="a", commit=2)
