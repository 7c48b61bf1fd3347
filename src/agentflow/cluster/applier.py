"""Applying committed entries: commands to the state machine, conf changes to the membership.

Every replica applies the same entries in the same order, and an entry's bytes come from
outside this node, so nothing here raises on them: a command that does not decode or fails is
rejected by the state machine, a conf change that does not decode is rejected alike. The
driver (:class:`agentflow.cluster.driver.ReadyDriver`) decides when entries apply (in order,
never while a snapshot is taken) and resolves the proposals with the results; this is its
:class:`~agentflow.cluster.driver.EntryApplier` in the master.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agentflow import faults
from agentflow.cluster.membership import Membership
from agentflow.cluster.own_entries import OwnEntries
from agentflow.cluster.transport import Transport
from agentflow.raft import ConfChange, Entry, EntryType, MemoryStorage, RaftNode
from agentflow.state import StateMachine
from agentflow.state.envelope import entry_format
from agentflow.state.events import EntryRejected, Event

__all__ = ["Applier"]

log = logging.getLogger(__name__)


class Applier:
    """Applies one committed entry at a time to the machine or to the configuration."""

    def __init__(
        self,
        *,
        machine: StateMachine,
        membership: Membership,
        storage: MemoryStorage,
        transport: Transport,
        on_applied: Callable[[tuple[Entry, ...], list[Event]], None],
    ) -> None:
        self._machine = machine
        self._membership = membership
        self._storage = storage
        self._transport = transport
        self._on_applied = on_applied
        self.own = OwnEntries()  # the leader's own entries, applied without decoding them

    def apply(self, raft: RaftNode, entry: Entry) -> Any:
        """Apply ``entry``; return the result its proposer gets."""
        if entry.type is EntryType.CONF_CHANGE:
            return self._apply_conf_change(raft, entry)
        if entry.data:
            # Applied here: no going back to a release that cannot read it (cluster.versions).
            transport = self._transport
            transport.format_floor = max(transport.format_floor, entry_format(entry.data))
            if faults.ARMED and b"SubmitTasks" in entry.data[:16]:
                faults.reached("before_apply")  # tests only: committed, not yet applied
            command = self.own.take(entry.index, entry.data)
            if command is not None:  # exactly what the followers decode from these bytes
                return self._machine.apply(entry.index, command)
            # Never raises on the entry's bytes: an undecodable or failing command is
            # rejected (recorded, and its proposer gets a 422) alike on every replica.
            return self._machine.apply_entry(entry.index, entry.data)
        return None

    def proposed(self, index: int, data: bytes, command: Any) -> None:
        if command is not None:
            self.own.proposed(index, data, command)

    def after_apply(self, entries: tuple[Entry, ...]) -> None:
        """A batch applied: hand its events (and the entries) to the node."""
        self._on_applied(entries, self.drain_events())

    def drain_events(self) -> list[Event]:
        """The events of the entries applied since the last call (rejections logged)."""
        events = self._machine.drain_events()
        for event in events:
            if isinstance(event, EntryRejected):
                log.warning("skipped the log entry at %d: %s", event.index, event.reason)
        return events

    def _apply_conf_change(self, raft: RaftNode, entry: Entry) -> Any:
        try:
            change = ConfChange.decode(entry.data)
        except (ValueError, TypeError, KeyError) as exc:  # bytes from outside: skip, alike
            return self._machine.reject(
                entry.index, f"undecodable membership change: {type(exc).__name__}: {exc}"
            )
        conf = raft.apply_conf_change(change)
        self._membership.apply(change, entry.index)
        self._storage.set_conf_state(conf)
        self._membership.sync_peers(self._transport)
        return None
