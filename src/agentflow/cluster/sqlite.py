"""How every SQLite database of a master is opened: WAL, synchronous=FULL, autocommit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["open_sqlite"]


def open_sqlite(path: Path) -> sqlite3.Connection:
    """A connection for one dedicated thread; transactions are explicit (BEGIN/COMMIT)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn
