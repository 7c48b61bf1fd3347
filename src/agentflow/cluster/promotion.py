"""Learner promotion: which learners the leader makes voters, and when.

A new master joins as a learner: it receives the log but does not count toward a quorum, so an
address that never answers costs nothing. The leader promotes a learner only once it has kept
up for ``after_ticks`` ticks in a row (its match index at the commit index, which the Raft core
also requires, and within ``lag_max`` entries of the leader's last index). Pure: the driver
feeds it the leader's status and the ticks that passed.
"""

from __future__ import annotations

from agentflow.raft import Status

__all__ = ["LearnerPromoter"]


class LearnerPromoter:
    def __init__(self, *, after_ticks: int, lag_max: int) -> None:
        assert after_ticks > 0 and lag_max >= 0, (after_ticks, lag_max)
        self.after_ticks = after_ticks
        self.lag_max = lag_max
        self._streak: dict[str, int] = {}  # learner -> ticks it has been caught up, in a row

    def reset(self) -> None:
        """Forget every streak (leadership changed hands: the next leader measures anew)."""
        self._streak.clear()

    def due(self, status: Status, ticks: int) -> list[str]:
        """The learners, by id, that have been caught up long enough to become voters."""
        learners = status.conf_state.learners
        for node_id in list(self._streak):
            if node_id not in learners:
                del self._streak[node_id]
        for node_id in learners:
            pr = status.progress.get(node_id)
            caught_up = (
                pr is not None
                and pr.match >= status.commit
                and status.last_index - pr.match <= self.lag_max
            )
            self._streak[node_id] = self._streak.get(node_id, 0) + ticks if caught_up else 0
        return sorted(n for n, streak in self._streak.items() if streak >= self.after_ticks)
