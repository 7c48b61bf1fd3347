"""Which hard state a write carries: the rule that spares a disk write per commit.

A Ready in which only the commit index moved needs no write of its own: nothing sent or
acknowledged depends on it, and a lost commit index is learnt again from the leader (recovery
also raises it to the state image's index). It waits and rides along with the next write.
Not so the first commit index covering a membership change (``Ready.sync_commit``): the
messages telling the followers wait for it to be on disk. Pure, so the simulator's disk
follows the same rule as raft.db.
"""

from __future__ import annotations

from agentflow.raft import HardState

__all__ = ["CommitDeferral"]


class CommitDeferral:
    def __init__(self) -> None:
        self._queued: HardState | None = None  # the last hard state a Ready carried
        self._unwritten: HardState | None = None  # a newer commit index, for the next write

    def plan(
        self, hard: HardState | None, *, other: bool, sync: bool
    ) -> tuple[bool, HardState | None]:
        """(whether to write now, the hard state to write with it).

        ``other``: the write holds entries or a snapshot besides the hard state.
        """
        if hard is None and not other:
            return False, None
        queued, self._queued = self._queued, hard or self._queued
        only_commit = hard is not None and queued is not None and _same_vote(hard, queued)
        if not other and only_commit and not sync:
            self._unwritten = hard
            return False, None
        if hard is None:
            hard = self._unwritten  # the newest commit index goes along with this write
        self._unwritten = None
        return True, hard

    def take_unwritten(self) -> HardState | None:
        """The commit index still waiting for a write (to write it on a clean close)."""
        hard, self._unwritten = self._unwritten, None
        return hard


def _same_vote(a: HardState, b: HardState) -> bool:
    return a.term == b.term and a.vote == b.vote
