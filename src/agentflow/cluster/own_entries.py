"""The leader's own entries: applied as the command it proposed, not decoded from the bytes.

When the leader proposes, it notes the index, the very bytes object it handed to Raft and the
command it encoded them from, if that command decodes to itself
(:func:`agentflow.state.verbatim.decodes_to_itself`). When the entry at that index commits
carrying that same bytes object (not an entry another leader put there, not one read back from
disk), the command is applied as is. Every other entry is decoded, as on every replica.
"""

from __future__ import annotations

from agentflow.state.commands import Command
from agentflow.state.verbatim import decodes_to_itself

__all__ = ["OwnEntries"]

# Entries proposed but never applied here (leadership lost, a snapshot installed over them)
# are dropped, all at once, past this many: they are then decoded like any other.
MAX_OWN_ENTRIES = 4096


class OwnEntries:
    def __init__(self) -> None:
        self._held: dict[int, tuple[bytes, Command]] = {}

    def proposed(self, index: int, data: bytes, command: Command) -> None:
        if not decodes_to_itself(command):
            return
        if len(self._held) >= MAX_OWN_ENTRIES:
            self._held.clear()
        self._held[index] = (data, command)

    def take(self, index: int, data: bytes) -> Command | None:
        """The command proposed here as ``data`` at ``index``; None: decode the bytes."""
        held = self._held.pop(index, None)
        if held is None or held[0] is not data:
            return None
        return held[1]
