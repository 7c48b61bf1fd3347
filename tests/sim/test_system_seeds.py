"""The full-system simulation: the real StateMachine under clients, workers and the leader's
timers, every invariant after every step, over a bounded range of seeds.

`make sim` / `make soak` run the same over wider ranges (`--model system`).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from agentflow.testing.sim import SimConfig, SimResult, run_seed

SEEDS = 500
STEPS = 1000
JOBS = 2
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _run_range(configs: list[SimConfig]) -> list[SimResult]:
    with ProcessPoolExecutor(JOBS, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_seed, configs, chunksize=25))


@pytest.mark.sim
def test_system_seed_range_keeps_every_invariant() -> None:
    configs = [SimConfig(seed=seed, steps=STEPS, model="system") for seed in range(SEEDS)]
    results = _run_range(configs)
    failures = [r.report() for r in results if not r.ok]
    assert not failures, "\n\n".join(failures[:5])
    # The workload really ran: tasks ended, leases fenced writes, workers failed and came
    # back late with stale reports, replicas were compared, snapshots installed under load.
    total = {
        name: sum(r.stats.get(name, 0) for r in results)
        for name in (
            "acked_tasks",
            "resource_writes",
            "stale_outcomes_refused",
            "worker_crash",
            "worker_pause",
            "digests_compared",
            "snapshot_delivered",
            "crash",
            "membership",
        )
    }
    assert all(count > 20 for count in total.values()), total


def _digest_in_fresh_process(seed: int, hash_seed: str) -> str:
    code = (
        "from agentflow.testing.sim import SimConfig, run_seed;"
        f"print(run_seed(SimConfig(seed={seed}, steps=1000, model='system')).digest)"
    )
    env = {**os.environ, "PYTHONPATH": SRC, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_a_system_seed_replays_exactly_in_any_process() -> None:
    here = run_seed(SimConfig(seed=7, steps=1000, model="system"))
    again = run_seed(SimConfig(seed=7, steps=1000, model="system"))
    assert here.ok and (here.digest, here.stats) == (again.digest, again.stats)
    digests = {_digest_in_fresh_process(7, hash_seed) for hash_seed in ("1", "2")}
    assert digests == {here.digest}


def test_the_replay_command_names_the_model() -> None:
    config = SimConfig(seed=3, steps=100, model="system")
    assert config.replay_command().endswith("--model system")


@pytest.mark.sim
def test_a_voter_added_empty_is_waited_for_while_it_catches_up() -> None:
    """Seed 5028625 (found by the 100,000-seed soak): a member added empty as a voter makes a
    two-voter quorum that needs it, and it catches up one entry per message for longer than
    the commit bound. Liveness waits while its match index moves, as it waits for learners."""
    result = run_seed(SimConfig(seed=5028625, steps=2000, model="system"))
    assert result.ok, result.report()
