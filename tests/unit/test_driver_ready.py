"""The Ready driver alone: synchronous, no I/O, over a real core and fake shell pieces."""

from __future__ import annotations

import ast
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

import agentflow.cluster.driver as driver_module
from agentflow.cluster.driver import ApplyGapError, MemoryLogStore, ReadyDriver
from agentflow.raft import (
    Config,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RaftNode,
    ReadState,
    StateRole,
    bootstrap,
)


class _Waiter:
    def __init__(self) -> None:
        self.result: Any = None
        self.exception: BaseException | None = None
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self.result, self._done = result, True

    def set_exception(self, exception: BaseException, /) -> None:
        self.exception, self._done = exception, True


class _Shell:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.applied: list[int] = []
        self.batches: list[tuple[int, ...]] = []
        self.roles: list[StateRole] = []
        self.ticks = 0
        self.parked: list[ReadState] = []
        self.released: list[int] = []

    # Outbox, EntryApplier, ReadWaiters and DriverShell in one
    def send(self, message: Message) -> None:
        self.sent.append(message)

    def apply(self, raft: RaftNode, entry: Entry) -> Any:
        if entry.type is EntryType.CONF_CHANGE:
            from agentflow.raft import ConfChange

            raft.apply_conf_change(ConfChange.decode(entry.data))
            return None
        self.applied.append(entry.index)
        return entry.data.upper()

    def applied_batch(self, entries: tuple[Entry, ...]) -> None:
        self.batches.append(tuple(e.index for e in entries))

    def proposed(self, index: int, data: bytes, command: Any) -> None:
        pass

    def park(self, read_states: Iterable[ReadState]) -> None:
        self.parked.extend(read_states)

    def release(self, applied: int) -> None:
        self.released.append(applied)

    def leadership(self, leader_id: str | None, role: StateRole) -> None:
        self.roles.append(role)

    def ticked(self, raft: RaftNode, ticks: int) -> None:
        self.ticks += ticks

    def refused(self, exc: Exception) -> Any:
        return f"refused: {exc}"

    def not_leader(self) -> Exception:
        return RuntimeError("not the leader")


class _Applier:
    def __init__(self, shell: _Shell) -> None:
        self._shell = shell

    def apply(self, raft: RaftNode, entry: Entry) -> Any:
        return self._shell.apply(raft, entry)

    def after_apply(self, entries: tuple[Entry, ...]) -> None:
        self._shell.applied_batch(entries)

    def proposed(self, index: int, data: bytes, command: Any) -> None:
        pass


def _single(storage: MemoryStorage | None = None) -> tuple[ReadyDriver, _Shell, MemoryStorage]:
    if storage is None:
        storage = MemoryStorage()
        bootstrap(storage, ["a"])
    shell = _Shell()
    driver = ReadyDriver(
        outbox=shell,
        store=MemoryLogStore(storage, on_entries=lambda entries: None),
        applier=_Applier(shell),
        reads=shell,
        shell=shell,
    )
    raft = RaftNode(Config(id="a", election_tick=10, heartbeat_tick=1), storage, random.Random(1))
    driver.start(raft, applied=0)
    driver.campaign_at = 1
    return driver, shell, storage


def _run(driver: ReadyDriver) -> int:
    """Handle every Ready at once (an instant disk); how many there were."""
    n = 0
    while (ready := driver.next_ready()) is not None:
        driver.begin(ready)
        driver.finish(ready)
        n += 1
    return n


def test_the_driver_does_no_io_and_reads_no_clock() -> None:
    tree = ast.parse(Path(driver_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = {"asyncio", "time", "os", "socket", "sqlite3", "threading", "random", "io"}
    assert not imported & forbidden
    assert {m for m in imported if m.startswith("agentflow")} <= {
        "agentflow.raft",
        "agentflow.cluster.proposals",
    }


def test_a_proposal_resolves_with_its_result_once_durable_and_applied() -> None:
    driver, shell, storage = _single()
    _run(driver)  # bootstrap applied, then the lone voter campaigns and leads
    assert shell.roles[-1] is StateRole.LEADER
    waiter = _Waiter()
    driver.propose(b"x", waiter)
    ready = driver.next_ready()
    assert ready is not None
    write = driver.begin(ready)
    assert [e.data for e in write.entries] == [b"x"]
    index = write.entries[0].index
    assert storage.last_index() < index  # not written until the shell says it is durable
    assert not waiter.done()
    driver.finish(ready)
    _run(driver)
    assert waiter.result == b"X" and shell.applied[-1] == index == driver.applied


def test_applying_waits_while_the_shell_takes_a_snapshot_then_goes_on_in_order() -> None:
    driver, shell, _ = _single()
    _run(driver)
    driver.holding = True
    waiters = [_Waiter() for _ in range(3)]
    for i, waiter in enumerate(waiters):
        driver.propose(b"p%d" % i, waiter)
    _run(driver)
    assert not any(w.done() for w in waiters)
    assert driver.deferred  # committed, held back
    driver.holding = False
    _run(driver)  # the next feed applies them, oldest first
    assert [w.result for w in waiters] == [b"P0", b"P1", b"P2"]
    assert shell.applied == sorted(shell.applied)


def test_a_proposal_the_core_drops_is_refused_as_not_leader() -> None:
    storage = MemoryStorage()
    bootstrap(storage, ["a", "b", "c"])
    driver, _, _ = _single(storage)
    driver.campaign_at = None
    waiter = _Waiter()
    driver.propose(b"x", waiter)
    _run(driver)
    assert isinstance(waiter.exception, RuntimeError)


def test_an_entry_after_a_gap_stops_the_driver() -> None:
    driver, _, _ = _single()
    _run(driver)
    driver.deferred = [Entry(term=2, index=driver.applied + 2, data=b"z")]
    with pytest.raises(ApplyGapError):
        driver.apply_in_order()


def test_a_snapshot_installed_by_the_shell_supersedes_what_waits_below_it() -> None:
    driver, _, _ = _single()
    _run(driver)
    waiter = _Waiter()
    driver.waiting.wait(driver.applied + 1, 2, waiter)
    driver.deferred = [Entry(term=2, index=driver.applied + 1, data=b"q")]
    driver.installed(driver.applied + 5)
    assert driver.deferred == [] and driver.applied > 0
    assert "superseded" in str(waiter.result)


def test_an_acknowledgement_a_later_append_in_the_same_batch_undid_is_not_sent() -> None:
    # A follower fed two leaders' appends between Readies (a master after a slow fsync): the
    # first is acknowledged up to 6 in term 2, the second (term 3) replaces 5 and 6. The Ready
    # writes up to 5 only, so the term-2 acknowledgement of 6 would be a lie.
    storage = MemoryStorage()
    bootstrap(storage, ["1", "2", "3"])
    shell = _Shell()
    driver = ReadyDriver(
        outbox=shell,
        store=MemoryLogStore(storage, on_entries=lambda entries: None),
        applier=_Applier(shell),
        reads=shell,
        shell=shell,
    )
    raft = RaftNode(Config(id="3", election_tick=10, heartbeat_tick=1), storage, random.Random(1))
    driver.start(raft, applied=0)
    _run(driver)

    def append(leader: str, term: int, after: tuple[int, int], entries: list[int]) -> Message:
        return Message(
            type=MessageType.APPEND,
            from_=leader,
            to="3",
            term=term,
            log_term=after[1],
            index=after[0],
            entries=tuple(Entry(term=term, index=i, data=b"x") for i in entries),
            commit=3,
        )

    driver.step(append("1", 2, (3, 1), [4, 5, 6]))
    driver.step(append("2", 3, (4, 2), [5]))
    shell.sent.clear()
    _run(driver)
    assert storage.last_index() == 5
    acks = [(m.to, m.term, m.index) for m in shell.sent if m.type is MessageType.APPEND_RESP]
    assert acks == [("2", 3, 5)]
