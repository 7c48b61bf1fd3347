"""What a master's Raft shell measures about itself, for ``/metrics``.

Observed by the asyncio shell (:mod:`agentflow.cluster.node`, the stores, the snapshot taker),
never by the pure cores: ``raft`` and ``state`` stay free of clocks. Read at scrape time by
:mod:`agentflow.api.raft_metrics`.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from agentflow.histograms import SLOW_BUCKETS_S, Histogram

LEADERS_KEPT = 20  # leader changes a master remembers for `GET /api/v1/cluster`

__all__ = ["RaftTimings"]


class RaftTimings:
    """Latencies (seconds) and counts of one Raft node since it started."""

    __slots__ = (
        "apply",
        "commit",
        "elections",
        "fsync",
        "leader_changes",
        "leaders",
        "snapshot_install",
        "snapshot_take",
    )

    def __init__(self) -> None:
        self.commit = Histogram()  # a proposal until its command is committed and applied
        self.fsync = Histogram()  # one raft.db transaction: entries and hard state, fsynced
        # One batch of committed entries applied to the machine, its events handed to the
        # master's services (waiters, sessions, the event stream) included.
        self.apply = Histogram()
        self.snapshot_take = Histogram(SLOW_BUCKETS_S)  # an image taken and written
        self.snapshot_install = Histogram(SLOW_BUCKETS_S)  # the leader's image restored
        self.elections = 0  # campaigns this node started (it became a candidate)
        self.leader_changes = 0  # times this node learnt of a leader other than the last
        # The last leaders this node learnt of, newest last: term, leader, wall-clock time.
        self.leaders: deque[dict[str, Any]] = deque(maxlen=LEADERS_KEPT)

    def note_leader(self, leader_id: str, term: int, *, changed: bool) -> None:
        """The node learnt of a leader (``changed``: another than the last one it knew)."""
        if changed:
            self.leader_changes += 1
        seen = self.leaders
        if not seen or (seen[-1]["term"], seen[-1]["leader_id"]) != (term, leader_id):
            seen.append({"term": term, "leader_id": leader_id, "at": time.time()})
