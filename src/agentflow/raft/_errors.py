"""Errors of the Raft core.

They are plain stdlib exceptions, independent of :mod:`agentflow.errors`: the shell decides how a
dropped proposal is shown to a client::

    RaftError
    ├── ProposalDroppedError                 not leader, transfer in progress, too large, ...
    ├── CompactedError                       the index asked for was compacted away
    ├── UnavailableError                     the index asked for is past the end of the log
    └── SnapshotTemporarilyUnavailableError  storage cannot give a snapshot right now
"""

from __future__ import annotations


class RaftError(Exception):
    """Root of every error the Raft core raises."""


class ProposalDroppedError(RaftError):
    """A proposal (or read, or conf change) was refused; the caller may retry elsewhere."""


class CompactedError(RaftError):
    """The requested index is at or below the compaction point of the log."""


class UnavailableError(RaftError):
    """The requested index is beyond the last index of the log."""


class SnapshotTemporarilyUnavailableError(RaftError):
    """Storage is building a snapshot; ask again later."""
