"""The system simulation's invariants are not vacuous: a planted state-machine bug fails a seed.

Each test plants one bug in the real state machine (for this process only) and runs seeds until
one fails (with today's workload one of the first fifty does; the range leaves room for changes
to the workload); the mutation catalogue (`make mutants`) does the same over wider budgets.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agentflow.state import locks, tasks
from agentflow.state.records import TaskRecord
from agentflow.testing.sim import SimConfig, run_seed


def _first_failure(seeds: range) -> str | None:
    for seed in seeds:
        result = run_seed(SimConfig(seed=seed, steps=2000, model="system"))
        if not result.ok:
            return result.failure
    return None


@pytest.fixture
def fencing_ignores_the_token(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = tasks._current

    def current(sm: object, task_id: str, token: int, worker_id: str) -> TaskRecord | None:
        task = sm.tasks.get(task_id)  # type: ignore[attr-defined]
        if task is not None and task.fencing_token is not None:
            token = task.fencing_token  # the bug: any token of this worker's is taken
        return real(sm, task_id, token, worker_id)  # type: ignore[arg-type]

    monkeypatch.setattr(tasks, "_current", current)
    yield


@pytest.fixture
def leases_end_early(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    real = locks.LockTable.expire

    def expire(self: locks.LockTable, *, now_ms: int, index: int) -> locks.LockChanges:
        return real(self, now_ms=now_ms + 40, index=index)  # the bug: 40 ms early

    monkeypatch.setattr(locks.LockTable, "expire", expire)
    yield


@pytest.mark.usefixtures("fencing_ignores_the_token")
def test_a_stale_report_accepted_is_caught() -> None:
    failure = _first_failure(range(1000, 1150))
    assert failure is not None and "was accepted; the live attempt's token" in failure


@pytest.mark.usefixtures("leases_end_early")
def test_a_lease_ended_early_is_caught() -> None:
    failure = _first_failure(range(1000, 1150))
    # the replicas' check that the expiry pass never ends a grant early sees it first, the
    # clients' overlapping beliefs later
    assert failure is not None
    assert "which ran until" in failure or "believes it holds it" in failure
