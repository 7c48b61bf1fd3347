"""Finding 5, the pure part: when the leader promotes a learner, and the CLI's refusal."""

from __future__ import annotations

from click.testing import CliRunner

from agentflow.cli.cluster import cluster
from agentflow.cluster.promotion import LearnerPromoter
from agentflow.raft import ConfState, ProgressState, ProgressStatus, StateRole, Status


def _status(commit: int, last_index: int, matches: dict[str, int]) -> Status:
    progress = {
        node_id: ProgressStatus(
            match=match,
            next=match + 1,
            state=ProgressState.REPLICATE,
            is_learner=node_id.startswith("l"),
            recent_active=True,
            pending_snapshot=0,
            inflight=0,
        )
        for node_id, match in matches.items()
    }
    return Status(
        id="v1",
        term=2,
        vote="v1",
        role=StateRole.LEADER,
        leader_id="v1",
        commit=commit,
        applied=commit,
        last_index=last_index,
        conf_state=ConfState(
            voters=frozenset(n for n in matches if n.startswith("v")),
            learners=frozenset(n for n in matches if n.startswith("l")),
        ),
        lead_transferee=None,
        progress=progress,
    )


def test_a_learner_is_due_only_after_keeping_up_long_enough() -> None:
    promoter = LearnerPromoter(after_ticks=4, lag_max=16)
    up = _status(100, 100, {"v1": 100, "l1": 100, "l2": 40})
    assert promoter.due(up, 2) == []
    assert promoter.due(up, 2) == ["l1"]  # four ticks caught up; l2 never is
    assert promoter.due(up, 1) == ["l1"]


def test_falling_behind_restarts_the_count_and_a_leader_change_forgets() -> None:
    promoter = LearnerPromoter(after_ticks=4, lag_max=16)
    up = _status(100, 100, {"v1": 100, "l1": 100})
    behind = _status(100, 100, {"v1": 100, "l1": 99})  # short of the commit index
    far = _status(100, 200, {"v1": 200, "l1": 150})  # at commit, but far from the last index
    assert promoter.due(up, 3) == []
    assert promoter.due(behind, 1) == []
    assert promoter.due(up, 3) == []
    assert promoter.due(far, 5) == []
    promoter.reset()
    assert promoter.due(up, 3) == []
    assert promoter.due(up, 1) == ["l1"]


def test_a_node_that_is_no_longer_a_learner_is_forgotten() -> None:
    promoter = LearnerPromoter(after_ticks=1, lag_max=0)
    assert promoter.due(_status(9, 9, {"v1": 9, "l1": 9}), 1) == ["l1"]
    assert promoter.due(_status(9, 9, {"v1": 9}), 1) == []


def test_cli_force_needs_voter() -> None:
    address = ["--raft-address", "127.0.0.1:7000", "--api-url", "http://h:1"]
    argv = ["add-member", "m4", *address, "--force", "--master-url", "http://127.0.0.1:1"]
    result = CliRunner().invoke(cluster, argv)
    assert result.exit_code == 2
    assert "--force only applies with --voter" in result.output
