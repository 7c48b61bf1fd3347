"""The node's view of the log: stable storage plus the unstable tail not yet persisted."""

from __future__ import annotations

from collections.abc import Sequence

from agentflow.raft._errors import CompactedError, UnavailableError
from agentflow.raft._storage import Storage, limit_size
from agentflow.raft._types import Entry, Snapshot


class Unstable:
    """Entries (and maybe a snapshot) handed to the shell but not yet reported durable.

    ``entries[k]`` holds index ``offset + k``. A pending snapshot sits at ``offset - 1``.
    """

    __slots__ = ("entries", "offset", "snapshot")

    def __init__(self, offset: int) -> None:
        self.offset = offset
        self.entries: list[Entry] = []
        self.snapshot: Snapshot | None = None

    def last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def term(self, index: int) -> int | None:
        if index < self.offset:
            snap = self.snapshot
            if snap is not None and snap.metadata.index == index:
                return snap.metadata.term
            return None
        k = index - self.offset
        if k >= len(self.entries):
            return None
        return self.entries[k].term

    def stable_to(self, index: int, term: int) -> None:
        if self.term(index) != term or index < self.offset:
            return  # replaced since the Ready was taken: still unstable
        del self.entries[: index + 1 - self.offset]
        self.offset = index + 1

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None

    def restore(self, snapshot: Snapshot) -> None:
        self.offset = snapshot.metadata.index + 1
        self.entries = []
        self.snapshot = snapshot

    def truncate_and_append(self, entries: Sequence[Entry]) -> None:
        after = entries[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(entries)
        elif after <= self.offset:
            # Replaces everything unstable; storage drops its own suffix when this is persisted.
            self.offset = after
            self.entries = list(entries)
        else:
            del self.entries[after - self.offset :]
            self.entries.extend(entries)


class RaftLog:
    """Committed and applied indices over storage + unstable entries.

    Invariant: applied <= committed <= last_index(); committed entries are never replaced.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applied = first - 1

    # -- indices and terms --------------------------------------------------------------

    def first_index(self) -> int:
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        last = self.unstable.last_index()
        if last is not None:
            return last
        return self.storage.last_index()

    def term(self, index: int) -> int:
        """Term of ``index``; raises CompactedError / UnavailableError outside the log."""
        if index < self.first_index() - 1:
            raise CompactedError(f"index {index} is compacted")
        if index > self.last_index():
            raise UnavailableError(f"index {index} is past the last index")
        term = self.unstable.term(index)
        if term is not None:
            return term
        return self.storage.term(index)

    def zero_term_on_error(self, index: int) -> int:
        try:
            return self.term(index)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, index: int, term: int) -> bool:
        try:
            return self.term(index) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, index: int, term: int) -> bool:
        """§5.4.1: a log with a later last term, or the same term and no shorter, is as new."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and index >= self.last_index())

    # -- appending ------------------------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, entries: Sequence[Entry]
    ) -> int | None:
        """Follower side of AppendEntries; returns the last index the leader vouched for.

        ``None`` when our entry at ``index`` does not have ``log_term`` (the leader backs up).
        Entries we already hold are kept, so a duplicate or reordered append never truncates.
        """
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(entries)
        conflict = self.find_conflict(entries)
        if conflict:
            if conflict <= self.committed:
                raise AssertionError(f"entry {conflict} conflicts with committed {self.committed}")
            self.append(entries[conflict - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """First index whose term differs from ours (or that we lack); 0 if all match."""
        last = self.last_index()
        for entry in entries:
            if entry.index > last or not self.match_term(entry.index, entry.term):
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest index <= ``index`` whose term is <= ``term``, with that term.

        Used for the rejection hint: every entry above it has a larger term than the probe's,
        so the leader can skip them all.
        """
        if index > self.last_index():
            return index, 0
        while index > 0:
            try:
                our_term = self.term(index)
            except CompactedError:
                return index, 0
            if our_term <= term:
                return index, our_term
            index -= 1
        return 0, 0

    def append(self, entries: Sequence[Entry]) -> int:
        if not entries:
            return self.last_index()
        after = entries[0].index - 1
        if after < self.committed:
            raise AssertionError(f"append after {after} is below committed {self.committed}")
        self.unstable.truncate_and_append(entries)
        return self.last_index()

    # -- commit and apply ------------------------------------------------------------------

    def commit_to(self, index: int) -> None:
        if index > self.committed:
            if index > self.last_index():
                raise AssertionError(f"commit {index} is past the last index {self.last_index()}")
            self.committed = index

    def maybe_commit(self, index: int, term: int) -> bool:
        """§5.4.2: the leader commits by counting replicas only for entries of its own term."""
        if index > self.committed and self.zero_term_on_error(index) == term:
            self.committed = index
            return True
        return False

    def applied_to(self, index: int) -> None:
        if index == 0:
            return
        if index > self.committed or index < self.applied:
            raise AssertionError(f"applied {index} outside [{self.applied}, {self.committed}]")
        self.applied = index

    def has_next_committed(self) -> bool:
        if self.unstable.snapshot is not None:
            return False
        return self.committed > max(self.applied, self.first_index() - 1)

    def next_committed(self) -> list[Entry]:
        if not self.has_next_committed():
            return []
        lo = max(self.applied + 1, self.first_index())
        return self.slice(lo, self.committed + 1, None)

    # -- reading entries --------------------------------------------------------------------

    def entries(self, lo: int, max_bytes: int | None) -> list[Entry]:
        if lo > self.last_index():
            return []
        return self.slice(lo, self.last_index() + 1, max_bytes)

    def slice(self, lo: int, hi: int, max_bytes: int | None) -> list[Entry]:
        """Entries in [lo, hi), within ``max_bytes`` (but at least one)."""
        if lo >= hi:
            return []
        if lo < self.first_index():
            raise CompactedError(f"index {lo} is compacted")
        offset = self.unstable.offset
        if lo >= offset:
            ents = self.unstable.entries[lo - offset : hi - offset]
            return limit_size(ents, max_bytes)
        ents = self.storage.entries(lo, min(hi, offset), max_bytes)
        if hi > offset and len(ents) == min(hi, offset) - lo:
            ents = ents + self.unstable.entries[: hi - offset]
            return limit_size(ents, max_bytes)
        return ents

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def restore(self, snapshot: Snapshot) -> None:
        self.committed = snapshot.metadata.index
        self.unstable.restore(snapshot)

    def stable_index(self) -> int:
        """The last index of this log known durable: reported by the shell through advance.

        Entries after it are unstable (handed out in a Ready, not yet advanced). While a
        snapshot is pending the whole log is being replaced: none of it counts (0).
        """
        if self.unstable.snapshot is not None:
            return 0
        return min(self.unstable.offset - 1, self.last_index())

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)
        self.applied = max(self.applied, index)
