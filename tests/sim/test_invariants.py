"""Each safety check fires on a hand-made violation (so a quiet run means something)."""

from __future__ import annotations

import pytest

from agentflow.raft import (
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from agentflow.testing.sim import InvariantViolationError, SafetyChecker

CONF = ConfState(voters=frozenset({"1", "2", "3"}))


def storage_with(*terms: int) -> MemoryStorage:
    storage = MemoryStorage(conf_state=CONF)
    entries = [Entry(term=t, index=i, data=f"e{i}.{t}".encode()) for i, t in enumerate(terms, 1)]
    if entries:
        storage.append(entries)
    return storage


def entry(index: int, term: int, data: bytes | None = None) -> Entry:
    return Entry(term=term, index=index, data=f"e{index}.{term}".encode() if data is None else data)


def lead(checker: SafetyChecker, node: str, term: int, storage: MemoryStorage) -> None:
    hs = HardState(term=term, vote=node)
    checker.on_hard_state(node, hs, storage, leading=False)
    storage.set_hard_state(hs)
    checker.on_leader(node, storage)


def test_two_leaders_in_one_term() -> None:
    checker = SafetyChecker()
    lead(checker, "1", 2, storage_with())
    with pytest.raises(InvariantViolationError, match="two leaders in term 2"):
        lead(checker, "2", 2, storage_with())


def test_vote_changed_within_a_term_and_term_going_back() -> None:
    checker = SafetyChecker()
    store = storage_with()
    checker.on_hard_state("1", HardState(term=3, vote="2"), store, leading=False)
    with pytest.raises(InvariantViolationError, match="changes its vote"):
        checker.on_hard_state("1", HardState(term=3, vote="3"), store, leading=False)
    with pytest.raises(InvariantViolationError, match="term goes back"):
        checker.on_hard_state("1", HardState(term=2), store, leading=False)
    checker.on_hard_state("1", HardState(term=4, commit=5), store, leading=False)
    with pytest.raises(InvariantViolationError, match="commit goes back"):
        checker.on_hard_state("1", HardState(term=4, commit=4), store, leading=False)


def test_leader_that_truncates_its_own_log() -> None:
    checker = SafetyChecker()
    store = storage_with(1, 2, 2)
    lead(checker, "1", 2, store)
    with pytest.raises(InvariantViolationError, match="truncates its log from 3"):
        checker.before_append("1", (entry(2, 1),), store, new_term=2)
    with pytest.raises(InvariantViolationError, match="rewrites its entry 3"):
        checker.before_append("1", (entry(3, 1), entry(4, 2)), store, new_term=2)
    # The same rewrite is fine once the node moved on to a term it does not lead.
    checker.before_append("1", (entry(2, 1),), store, new_term=3)


def test_same_index_and_term_with_different_commands() -> None:
    checker = SafetyChecker()
    checker.before_append("1", (entry(1, 1, b"x"),), storage_with(), new_term=1)
    with pytest.raises(InvariantViolationError, match="log matching"):
        checker.before_append("2", (entry(1, 1, b"y"),), storage_with(), new_term=1)


def test_same_entry_after_different_previous_terms() -> None:
    checker = SafetyChecker()
    checker.before_append("1", (entry(3, 4),), storage_with(1, 1), new_term=4)
    with pytest.raises(InvariantViolationError, match="after term 2"):
        checker.before_append("2", (entry(3, 4),), storage_with(1, 2), new_term=4)


def test_new_leader_missing_a_committed_entry() -> None:
    checker = SafetyChecker()
    old = storage_with(1, 1, 1)
    lead(checker, "1", 1, old)
    checker.on_hard_state("1", HardState(term=1, vote="1", commit=3), old, leading=True)
    with pytest.raises(InvariantViolationError, match="leader completeness"):
        lead(checker, "2", 2, storage_with(1, 1))


def test_two_nodes_applying_different_commands_at_one_index() -> None:
    checker = SafetyChecker()
    checker.on_apply("1", entry(1, 1, b"a"))
    checker.on_apply("2", entry(1, 1, b"a"))
    with pytest.raises(InvariantViolationError, match="state-machine safety"):
        checker.on_apply("3", entry(1, 2, b"b"))


def test_vote_granted_before_it_is_durable() -> None:
    checker = SafetyChecker()
    store = storage_with()
    checker.on_hard_state("2", HardState(term=5, vote=None), store, leading=False)
    grant = Message(type=MessageType.VOTE_RESP, from_="2", to="1", term=5)
    with pytest.raises(InvariantViolationError, match="before persisting it"):
        checker.on_send(grant, store)
    checker.on_hard_state("2", HardState(term=5, vote="1"), store, leading=False)
    checker.on_send(grant, store)


def test_append_acknowledged_before_the_entries_are_durable() -> None:
    checker = SafetyChecker()
    store = storage_with(1, 1)
    checker.on_hard_state("2", HardState(term=1), store, leading=False)
    ack = Message(type=MessageType.APPEND_RESP, from_="2", to="1", term=1, index=3)
    with pytest.raises(InvariantViolationError, match="acknowledges 3"):
        checker.on_send(ack, store)


def test_message_in_a_term_not_yet_durable() -> None:
    checker = SafetyChecker()
    store = storage_with()
    vote = Message(type=MessageType.VOTE, from_="1", to="2", term=2)
    with pytest.raises(InvariantViolationError, match="before persisting that term"):
        checker.on_send(vote, store)
    # A pre-vote carries the prospective term, which is never persisted.
    checker.on_send(Message(type=MessageType.PRE_VOTE, from_="1", to="2", term=2), store)


def test_leader_sending_entries_it_has_not_persisted() -> None:
    checker = SafetyChecker()
    store = storage_with(1)
    lead(checker, "1", 1, store)
    append = Message(
        type=MessageType.APPEND, from_="1", to="2", term=1, entries=(entry(1, 1), entry(2, 1))
    )
    with pytest.raises(InvariantViolationError, match="not in its durable log"):
        checker.on_send(append, store)


def test_snapshot_that_disagrees_with_what_was_applied() -> None:
    checker = SafetyChecker()
    checker.on_apply("1", entry(1, 1))
    snap = Snapshot(metadata=SnapshotMetadata(index=1, term=2, conf_state=CONF))
    with pytest.raises(InvariantViolationError, match="applied with term 1"):
        checker.before_snapshot("2", snap, storage_with())


def test_whole_log_cross_check() -> None:
    checker = SafetyChecker()
    checker.check_logs([("1", storage_with(1, 1, 2)), ("2", storage_with(1, 1, 2, 2))])
    with pytest.raises(InvariantViolationError, match="differ at 2"):
        checker.check_logs([("1", storage_with(1, 1, 2)), ("2", storage_with(1, 2, 2))])
