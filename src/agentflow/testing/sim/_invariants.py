"""Raft's safety properties, checked incrementally as the shells persist, send and apply.

Every hook below is called by a node's shell at the moment the corresponding Ready step is
performed, so a violation is caught at the step that caused it, with the cluster state of
that instant still in hand. Each check is O(size of the Ready), which is what lets the
simulator check after every single step. `check_logs` is the slower whole-log cross-check,
run now and then and at the end of a run.

Properties (Raft paper, figure 3, plus the I/O ordering the Ready contract demands):

- election safety: at most one leader per term;
- leader append-only: a leader never truncates or rewrites its log during its term;
- log matching: two entries with the same index and term hold the same command and are
  preceded by identical logs (checked as: the same (index, term) always carries the same
  command and the same previous term — by induction that makes the prefixes equal);
- leader completeness: a new leader's log holds every entry already known to be committed;
- state-machine safety: no two nodes apply different commands at one index;
- durable term, vote and commit never go back, and a vote is never changed within a term;
- nothing is sent before what it depends on is durable (granted votes, acknowledged appends,
  the term of the sender); a leader's appends may go out before its own copy is durable
  (thesis §10.2.1), but
- a leader's commit index only ever covers an entry durable on a majority of its voters (its
  own copy counted only once durable).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from agentflow.raft import (
    CompactedError,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    Snapshot,
)

__all__ = ["InvariantViolationError", "SafetyChecker"]

# Messages whose term is a prospective one, not yet adopted (and so not yet persisted).
_PROSPECTIVE = frozenset({MessageType.PRE_VOTE, MessageType.PRE_VOTE_RESP})


class InvariantViolationError(AssertionError):
    """A safety property of Raft does not hold: the seed that produced it is a bug report."""


@dataclass(slots=True)
class _NodeRecord:
    hard_state: HardState = field(default_factory=HardState)
    led_terms: set[int] = field(default_factory=set)
    # The voters this node counted when it last led, and the ones before the last change: a
    # leader's configuration changes when it applies the change, so a commit it decided just
    # before (and persists just after) was counted among the previous voters.
    voters: frozenset[str] = frozenset()
    prev_voters: frozenset[str] = frozenset()


def _fail(message: str) -> None:
    raise InvariantViolationError(message)


class SafetyChecker:
    """Cluster-wide memory of what has been seen, to judge each new fact against."""

    def __init__(self) -> None:
        self._nodes: dict[str, _NodeRecord] = {}
        self._leader_of_term: dict[int, str] = {}
        # (index, term) -> (entry type, data, term of the previous index or -1 if unknown)
        self._entries: dict[tuple[int, int], tuple[EntryType, bytes, int]] = {}
        self._applied: dict[int, tuple[int, bytes]] = {}
        # term -> (highest commit index its leader reached, term of the entry there)
        self._commit_in_term: dict[int, tuple[int, int]] = {}
        self.committed_index = 0
        self.committed_term = 0
        self._storages: dict[str, MemoryStorage] = {}  # every node's durable storage

    def register(self, node_id: str, storage: MemoryStorage) -> None:
        """Know ``node_id``'s durable storage, to count who holds an entry a leader commits."""
        self._storages[node_id] = storage

    def _node(self, node_id: str) -> _NodeRecord:
        record = self._nodes.get(node_id)
        if record is None:
            record = self._nodes[node_id] = _NodeRecord()
        return record

    def applied_data(self) -> Mapping[int, tuple[int, bytes]]:
        """index -> (term, data) of every entry some node applied."""
        return self._applied

    # -- step 1: persist --------------------------------------------------------------------

    def before_snapshot(self, node_id: str, snapshot: Snapshot, storage: MemoryStorage) -> None:
        meta = snapshot.metadata
        record = self._node(node_id)
        if record.hard_state.term in record.led_terms:
            _fail(f"node {node_id} installs a snapshot at {meta.index} while leading its term")
        known = self._applied.get(meta.index)
        if known is not None and known[0] != meta.term:
            _fail(
                f"node {node_id} installs snapshot ({meta.index}, term {meta.term}) but index "
                f"{meta.index} was applied with term {known[0]}"
            )
        if meta.index < storage.snapshot().metadata.index:
            _fail(f"node {node_id} installs snapshot {meta.index} older than its own")

    def before_append(
        self, node_id: str, entries: tuple[Entry, ...], storage: MemoryStorage, new_term: int
    ) -> None:
        first = entries[0].index
        last = storage.last_index()
        if first > last + 1:
            _fail(f"node {node_id} appends at {first} leaving a gap after {last}")
        prev = first - 1
        try:
            prev_term = storage.term(prev) if prev <= last else -1
        except CompactedError:
            prev_term = -1
        record = self._node(node_id)
        if first <= last and new_term in record.led_terms:
            self._check_leader_append_only(node_id, entries, storage, new_term)
        for entry in entries:
            if entry.index != prev + 1:
                _fail(f"node {node_id} appends non-consecutive entries at {entry.index}")
            if entry.term < prev_term:
                _fail(
                    f"node {node_id} appends ({entry.index}, {entry.term}) after term {prev_term}"
                )
            key = (entry.index, entry.term)
            seen = self._entries.get(key)
            if seen is None:
                self._entries[key] = (entry.type, entry.data, prev_term)
            else:
                self._check_same_entry(node_id, entry, prev_term, seen)
            prev, prev_term = entry.index, entry.term

    def _check_same_entry(
        self, node_id: str, entry: Entry, prev_term: int, seen: tuple[EntryType, bytes, int]
    ) -> None:
        kind, data, seen_prev = seen
        if kind is not entry.type or data != entry.data:
            _fail(
                f"log matching: node {node_id} holds ({entry.index}, term {entry.term}) = "
                f"{entry.data!r} but another log had {data!r}"
            )
        if prev_term >= 0 and seen_prev >= 0 and prev_term != seen_prev:
            _fail(
                f"log matching: node {node_id} holds ({entry.index}, term {entry.term}) after "
                f"term {prev_term}, another log after term {seen_prev}"
            )

    def _check_leader_append_only(
        self, node_id: str, entries: tuple[Entry, ...], storage: MemoryStorage, term: int
    ) -> None:
        last = storage.last_index()
        if entries[-1].index < last:
            _fail(f"leader {node_id} of term {term} truncates its log from {last}")
        for entry in entries:
            if entry.index > last:
                break
            try:
                held = storage.term(entry.index)
            except CompactedError:
                continue
            if held != entry.term:
                _fail(f"leader {node_id} of term {term} rewrites its entry {entry.index}")

    def on_hard_state(
        self,
        node_id: str,
        hard_state: HardState,
        storage: MemoryStorage,
        *,
        leading: bool,
        voters: frozenset[str] = frozenset(),
    ) -> None:
        record = self._node(node_id)
        old = record.hard_state
        if hard_state.term < old.term:
            _fail(f"node {node_id} term goes back {old.term} -> {hard_state.term}")
        if hard_state.commit < old.commit:
            _fail(f"node {node_id} commit goes back {old.commit} -> {hard_state.commit}")
        if hard_state.term == old.term and old.vote is not None and hard_state.vote != old.vote:
            _fail(
                f"node {node_id} changes its vote in term {old.term}: "
                f"{old.vote} -> {hard_state.vote}"
            )
        record.hard_state = hard_state
        if leading and voters != record.voters:
            record.prev_voters, record.voters = record.voters, voters
        if leading and hard_state.commit:
            best = self._commit_in_term.get(hard_state.term, (0, 0))
            if hard_state.commit > best[0]:
                try:
                    entry_term = storage.term(hard_state.commit)
                except CompactedError:
                    entry_term = storage.snapshot().metadata.term
                self._commit_in_term[hard_state.term] = (hard_state.commit, entry_term)
                if entry_term == hard_state.term:  # counted by this leader, not inherited
                    self._check_commit_durable(
                        node_id, hard_state.commit, entry_term, voters, record.prev_voters
                    )

    def _check_commit_durable(
        self,
        node_id: str,
        index: int,
        term: int,
        voters: frozenset[str],
        prev_voters: frozenset[str] = frozenset(),
    ) -> None:
        """A leader commits ``index`` only once a majority of ``voters`` holds it on disk (or
        of ``prev_voters``: one change of a single voter ago, their majorities intersect)."""
        if not voters or not self._storages:
            return
        holders = sorted(v for v in voters if _durably_holds(self._storages.get(v), index, term))
        before = [v for v in prev_voters if _durably_holds(self._storages.get(v), index, term)]
        if len(holders) <= len(voters) // 2 and len(before) <= len(prev_voters) // 2:
            _fail(
                f"leader {node_id} commits ({index}, term {term}) durable only on {holders} "
                f"of voters {sorted(voters)}"
            )

    # -- roles --------------------------------------------------------------------------------

    def on_leader(self, node_id: str, storage: MemoryStorage) -> None:
        """`node_id` reports itself leader; its log (now durable) must hold all commits."""
        record = self._node(node_id)
        term = record.hard_state.term
        holder = self._leader_of_term.setdefault(term, node_id)
        if holder != node_id:
            _fail(f"two leaders in term {term}: {holder} and {node_id}")
        if record.hard_state.vote != node_id:
            _fail(f"leader {node_id} of term {term} has not voted for itself durably")
        record.led_terms.add(term)
        # Entries committed by the leaders of earlier terms must all be in this log: by log
        # matching it is enough to find the highest of them at its term.
        index, committed_term = max(
            (value for t, value in self._commit_in_term.items() if t < term), default=(0, 0)
        )
        if index == 0:
            return
        if storage.last_index() < index:
            _fail(
                f"leader completeness: leader {node_id} of term {term} ends at "
                f"{storage.last_index()} but {index} was committed in an earlier term"
            )
        try:
            held = storage.term(index)
        except CompactedError:
            return  # covered by its snapshot, checked when the snapshot was installed
        if held != committed_term:
            _fail(
                f"leader completeness: leader {node_id} of term {term} has term {held} at "
                f"committed index {index} (committed with term {committed_term})"
            )

    # -- step 2: send ---------------------------------------------------------------------

    def on_send(self, message: Message, storage: MemoryStorage, *, early: bool = False) -> None:
        """``early``: sent before the sender persisted its Ready (a leader's, §10.2.1)."""
        record = self._node(message.from_)
        durable = record.hard_state
        kind = message.type
        if kind not in _PROSPECTIVE and message.term > durable.term:
            _fail(
                f"{message.from_} sends {kind.name} in term {message.term} before persisting "
                f"that term (durable {durable.term})"
            )
        if kind is MessageType.VOTE_RESP and not message.reject:
            # A grant is safe once its term is durable with this vote, or a later term is
            # durable (the node never acts in that term again). A driver that feeds many inputs
            # between two Readies (a master after a slow fsync) may send the second kind.
            if durable.term < message.term or (
                durable.term == message.term and durable.vote != message.to
            ):
                _fail(
                    f"{message.from_} grants its vote to {message.to} in term {message.term} "
                    f"before persisting it (durable term {durable.term} vote {durable.vote})"
                )
        elif kind is MessageType.APPEND_RESP and not message.reject:
            if message.index > storage.last_index():
                _fail(
                    f"{message.from_} acknowledges {message.index} but only "
                    f"{storage.last_index()} is durable"
                )
        elif kind is MessageType.APPEND and message.entries and not early:
            tail = message.entries[-1]
            try:
                durable_term = storage.term(tail.index) if tail.index <= storage.last_index() else 0
            except CompactedError:
                durable_term = tail.term
            if durable_term != tail.term:
                _fail(
                    f"leader {message.from_} sends ({tail.index}, {tail.term}) that is not in "
                    f"its durable log"
                )

    # -- step 3: apply ----------------------------------------------------------------------

    def on_apply(self, node_id: str, entry: Entry) -> None:
        seen = self._applied.get(entry.index)
        if seen is None:
            self._applied[entry.index] = (entry.term, entry.data)
            if entry.index > self.committed_index:
                self.committed_index = entry.index
                self.committed_term = entry.term
        elif seen != (entry.term, entry.data):
            _fail(
                f"state-machine safety: node {node_id} applies ({entry.index}, term "
                f"{entry.term}) {entry.data!r} but ({seen[0]}) {seen[1]!r} was applied there"
            )

    # -- whole-log cross-check ------------------------------------------------------------

    def check_logs(self, storages: Iterable[tuple[str, MemoryStorage]]) -> None:
        """Log matching over the entries each node still holds, compared pairwise."""
        logs: list[tuple[str, dict[int, Entry], int]] = []
        for node_id, storage in storages:
            first, last = storage.first_index(), storage.last_index()
            held = storage.entries(first, last + 1) if last >= first else []
            logs.append((node_id, {e.index: e for e in held}, first))
        for i, (a_id, a_log, a_first) in enumerate(logs):
            for b_id, b_log, b_first in logs[i + 1 :]:
                common = [k for k, e in a_log.items() if k in b_log and b_log[k].term == e.term]
                if not common:
                    continue
                top = max(common)
                for index in range(max(a_first, b_first), top + 1):
                    if a_log.get(index) != b_log.get(index):
                        _fail(
                            f"log matching: {a_id} and {b_id} agree on the term at {top} but "
                            f"differ at {index}: {a_log.get(index)} vs {b_log.get(index)}"
                        )


def _durably_holds(storage: MemoryStorage | None, index: int, term: int) -> bool:
    if storage is None:
        return False
    if index <= storage.snapshot().metadata.index:
        return True  # covered by its snapshot (one is only taken of what was applied)
    if index > storage.last_index():
        return False
    try:
        return storage.term(index) == term
    except CompactedError:
        return True
