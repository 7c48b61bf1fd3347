"""A full disk while the log is written: the error says so (it was hidden by a failed ROLLBACK).

Found by the chaos suite's disk-full fault: SQLite ends the transaction itself on
SQLITE_FULL, and the store's ROLLBACK then raised "cannot rollback - no transaction is active"
in place of "database or disk is full". The database is capped with `max_page_count` here, which
makes SQLite answer exactly as a full disk does.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agentflow.cluster.raftstore import RaftStore
from agentflow.raft import Entry, HardState


def test_a_full_database_reports_disk_full_and_keeps_what_was_written(tmp_path: Path) -> None:
    store = RaftStore(tmp_path / "raft.db")
    store._open()
    store._save(HardState(term=1, vote="m1", commit=0), [Entry(term=1, index=1, data=b"x")])
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [Entry(term=1, index=i, data=b"y" * 65536) for i in range(2, 40)]
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        store._save(HardState(term=1, vote="m1", commit=1), big)
    assert not store.conn.in_transaction
    hard, entries = store._load(0)
    assert hard == HardState(term=1, vote="m1", commit=0)
    assert [e.index for e in entries] == [1]
