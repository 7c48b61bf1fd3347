"""`GET /api/v1/cluster`'s recent elections: each leader of a new term, once, newest kept."""

from __future__ import annotations

from agentflow.cluster.timings import LEADERS_KEPT, RaftTimings


def test_a_leader_is_noted_once_per_term_and_only_the_last_ones_are_kept() -> None:
    timings = RaftTimings()
    timings.note_leader("m1", 2, changed=True)
    timings.note_leader("m1", 2, changed=False)  # heard again: no new election
    timings.note_leader("m2", 3, changed=True)
    timings.note_leader("m2", 3, changed=False)
    assert [(seen["term"], seen["leader_id"]) for seen in timings.leaders] == [(2, "m1"), (3, "m2")]
    assert timings.leader_changes == 2
    for term in range(4, 4 + LEADERS_KEPT):
        timings.note_leader("m1", term, changed=True)
    assert len(timings.leaders) == LEADERS_KEPT
    assert timings.leaders[-1]["term"] == 3 + LEADERS_KEPT
