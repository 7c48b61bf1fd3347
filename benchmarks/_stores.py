"""The masters' store for a benchmark: the embedded Raft log (``sqlite``), or a throwaway
PostgreSQL or MariaDB server on loopback (``agentflow.testing.sqlserve``) with a fresh
database for each cluster.

>>> with store_server("postgresql") as stores:
...     url = stores.new_database()  # postgresql://agentflow:...@127.0.0.1:PORT/bench1

The server runs with its shipped durability (fsync on; MariaDB
``innodb_flush_log_at_trx_commit=1``), on this machine's disk, and is killed and its files
deleted on every exit path.
"""

from __future__ import annotations

import contextlib
import itertools
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

STORES = ("sqlite", "postgresql", "mysql")

__all__ = ["STORES", "StoreServer", "log_timings", "store_server"]


class StoreServer:
    """Hands out the store URL of each new cluster (None: the embedded Raft log)."""

    def __init__(self, kind: str, server: Any = None) -> None:
        self.kind = kind
        self._server = server
        self._names = itertools.count(1)

    @property
    def sql(self) -> bool:
        return self._server is not None

    def new_database(self) -> str | None:
        """A fresh, empty database's URL (None for ``sqlite``: each cluster has its own)."""
        if self._server is None:
            return None
        url: str = self._server.create_database(f"bench{next(self._names)}")
        return url

    def describe(self) -> str:
        if self._server is None:
            return "sqlite (embedded Raft log)"
        return f"{self.kind} on 127.0.0.1:{self._server.port} (throwaway, fsync on)"


@contextlib.contextmanager
def store_server(kind: str) -> Iterator[StoreServer]:
    """``kind``'s server started (nothing for ``sqlite``), killed and deleted after."""
    if kind not in STORES:
        raise ValueError(f"unknown store {kind!r}: one of {', '.join(STORES)}")
    if kind == "sqlite":
        yield StoreServer(kind)
        return
    from agentflow.testing.sqlserve import MariaDbServer, PostgresServer, unavailable

    why = unavailable(kind)
    if why is not None:
        raise RuntimeError(f"--store {kind}: {why}")
    # Not 0700: the server runs as postgres / mysql when we are root.
    root = Path(tempfile.mkdtemp(prefix=f"agentflow-bench-{kind}-"))
    root.chmod(0o711)
    cls = PostgresServer if kind == "postgresql" else MariaDbServer
    server = cls(root)
    try:
        server.start()
        yield StoreServer(kind, server)
    finally:
        server.kill9()
        shutil.rmtree(root, ignore_errors=True)


_SERIES = ("commit", "fsync", "apply")
_LINE = re.compile(r"^agentflow_raft_(commit|fsync|apply)_seconds_(sum|count) ([0-9.e+-]+)$")


def log_timings(url: str, prefix: str) -> dict[str, float]:
    """Where the master at ``url`` spent its log's time since it started, from its /metrics:
    ``<prefix>_appends`` (one raft.db write, or one append transaction on a SQL store),
    ``_append_mean_ms``, ``_entries_per_append`` (commands committed per append: group
    commit), ``_commit_mean_ms`` (a proposal until applied), ``_apply_mean_ms`` (a batch
    applied). Empty when the master does not answer."""
    try:
        text = httpx.get(url + "/metrics", timeout=5.0).text
    except httpx.HTTPError:
        return {}
    seen: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            seen[(match[1], match[2])] = float(match[3])
    count = {s: seen.get((s, "count"), 0.0) for s in _SERIES}
    mean_ms = {s: 1000 * seen.get((s, "sum"), 0.0) / count[s] if count[s] else 0.0 for s in _SERIES}
    return {
        f"{prefix}_appends": count["fsync"],
        f"{prefix}_append_mean_ms": mean_ms["fsync"],
        f"{prefix}_entries_per_append": count["commit"] / count["fsync"] if count["fsync"] else 0,
        f"{prefix}_commit_mean_ms": mean_ms["commit"],
        f"{prefix}_apply_mean_ms": mean_ms["apply"],
    }
