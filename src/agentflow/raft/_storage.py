"""The read interface the core needs from stable storage, and an in-memory implementation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agentflow.raft._errors import CompactedError, UnavailableError
from agentflow.raft._types import (
    ConfState,
    Entry,
    HardState,
    Snapshot,
    SnapshotMetadata,
    entry_size,
)


class Storage(Protocol):
    """What the core reads from stable storage. Writes go through :class:`Ready` and the shell.

    Indices follow the paper: the first entry of a log is index 1; index ``first_index() - 1``
    is the last compacted entry (its term is still known, from the snapshot).
    """

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries in [lo, hi); at least one if any, then as many as fit ``max_bytes``."""
        ...

    def term(self, index: int) -> int: ...

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


def limit_size(entries: list[Entry], max_bytes: int | None) -> list[Entry]:
    """Keep the longest prefix within ``max_bytes``, but never fewer than one entry."""
    if max_bytes is None or not entries:
        return entries
    total = 0
    for count, entry in enumerate(entries):
        total += entry_size(entry)
        if total > max_bytes and count > 0:
            del entries[count:]
            break
    return entries


class MemoryStorage:
    """Storage in memory: entries in one list after an offset, so appends never copy the log.

    ``_entries[k]`` holds index ``_offset + 1 + k``; ``_offset``/``_offset_term`` name the last
    compacted entry. The snapshot may be newer than the compaction point, never older.
    """

    def __init__(self, conf_state: ConfState | None = None) -> None:
        cs = conf_state if conf_state is not None else ConfState(voters=frozenset())
        self._hard_state = HardState()
        self._snapshot = Snapshot(metadata=SnapshotMetadata(index=0, term=0, conf_state=cs))
        self._conf_state = cs
        self._offset = 0
        self._offset_term = 0
        self._entries: list[Entry] = []

    # -- read side (Storage) --------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._conf_state

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        if lo <= self._offset:
            raise CompactedError(f"index {lo} is compacted (offset {self._offset})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"index {hi - 1} is past the last index {self.last_index()}")
        start = lo - self._offset - 1
        return limit_size(self._entries[start : hi - self._offset - 1], max_bytes)

    def term(self, index: int) -> int:
        if index == self._offset:
            return self._offset_term
        if index < self._offset:
            raise CompactedError(f"index {index} is compacted (offset {self._offset})")
        if index > self.last_index():
            raise UnavailableError(f"index {index} is past the last index {self.last_index()}")
        return self._entries[index - self._offset - 1].term

    def first_index(self) -> int:
        return self._offset + 1

    def last_index(self) -> int:
        return self._offset + len(self._entries)

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # -- write side (the shell) -----------------------------------------------------------

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def set_conf_state(self, conf_state: ConfState) -> None:
        """Record the membership after the shell applied a conf change (returned on restart)."""
        self._conf_state = conf_state

    def append(self, entries: Sequence[Entry]) -> None:
        """Append, replacing any entry at the same index and everything after it."""
        if not entries:
            return
        first = entries[0].index
        last = entries[-1].index
        if last <= self._offset:
            return  # all of it is compacted: a snapshot already covers it
        if first <= self._offset:
            entries = entries[self._offset + 1 - first :]
            first = self._offset + 1
        if first > self.last_index() + 1:
            raise AssertionError(f"gap: appending {first} after last index {self.last_index()}")
        del self._entries[first - self._offset - 1 :]
        self._entries.extend(entries)

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Replace the whole log with ``snapshot`` (a follower that fell far behind)."""
        meta = snapshot.metadata
        if meta.index < self._snapshot.metadata.index:
            return  # older than what we hold
        self._snapshot = snapshot
        self._conf_state = meta.conf_state
        self._offset = meta.index
        self._offset_term = meta.term
        self._entries = []

    def create_snapshot(self, index: int, conf_state: ConfState, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine at applied ``index``; see :meth:`compact`."""
        if index < self._snapshot.metadata.index:
            raise CompactedError(f"snapshot at {self._snapshot.metadata.index} is newer")
        if index > self.last_index():
            raise UnavailableError(f"index {index} is past the last index {self.last_index()}")
        meta = SnapshotMetadata(index=index, term=self.term(index), conf_state=conf_state)
        self._snapshot = Snapshot(metadata=meta, data=data)
        return self._snapshot

    def compact(self, index: int) -> None:
        """Drop entries up to ``index``; it must be covered by the snapshot (create it first).

        Compacting past the snapshot would leave a follower that needs the dropped entries
        with nothing to catch up from, so it is refused. Already compacted: nothing to do.
        """
        if index <= self._offset:
            return
        if index > self._snapshot.metadata.index:
            raise ValueError(f"compact({index}) is past the snapshot at {self.snapshot_index}")
        term = self.term(index)
        del self._entries[: index - self._offset]
        self._offset = index
        self._offset_term = term

    @property
    def snapshot_index(self) -> int:
        return self._snapshot.metadata.index
