"""raft.db: a Ready that only moves the commit index costs no write of its own.

The commit index need not be on disk (a lost one is learnt again; recovery raises it to the
state image's index), so it waits for the next durable write, or for close(), instead of a
hop to the store's thread per commit.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgpack

from agentflow.cluster.raftstore import RaftStore
from agentflow.raft import Entry, HardState


def _commit_on_disk(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'hard_state'").fetchone()
    finally:
        conn.close()
    _term, _vote, commit = msgpack.unpackb(row[0])
    return int(commit)


async def test_the_commit_index_goes_with_the_next_entries(tmp_path: Path) -> None:
    path = tmp_path / "raft.db"
    store = RaftStore(path)
    await store.open()
    await store.load(0)
    await store.save(HardState(term=1, vote="a", commit=0), [Entry(term=1, index=1, data=b"x")])
    await store.save(HardState(term=1, vote="a", commit=1), ())
    await store._run(lambda: None)  # whatever was handed to the store's thread is done
    assert _commit_on_disk(path) == 0  # not written on its own
    await store.save(None, [Entry(term=1, index=2, data=b"y")])
    assert _commit_on_disk(path) == 1  # carried by the next durable write
    await store.save(HardState(term=1, vote="a", commit=2), ())
    await store.close()
    assert _commit_on_disk(path) == 2  # and by close()


async def test_a_new_term_supersedes_the_unwritten_commit(tmp_path: Path) -> None:
    path = tmp_path / "raft.db"
    store = RaftStore(path)
    await store.open()
    await store.load(0)
    await store.save(HardState(term=1, vote="a", commit=0), [Entry(term=1, index=1, data=b"x")])
    await store.save(HardState(term=1, vote="a", commit=1), ())
    await store.save(HardState(term=2, vote="b", commit=1), ())
    assert _commit_on_disk(path) == 1
    await store.close()
    reopened = RaftStore(path)
    await reopened.open()
    hard, held = await reopened.load(0)
    await reopened.close()
    assert hard == HardState(term=2, vote="b", commit=1)
    assert [e.index for e in held] == [1]
