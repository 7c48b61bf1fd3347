"""The bounded default: many seeds of the full fault mix, every invariant after every step.

`make sim` / `make soak` run the same thing over wider ranges; this is the slice the test
suite affords (about 1,000 seeds x 2,000 steps in well under a minute on 2 cores).
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from agentflow.testing.sim import SimConfig, SimResult, run_seed

SEEDS = 1000
STEPS = 2000
JOBS = 2


def _run_range(configs: list[SimConfig]) -> list[SimResult]:
    # spawn, not fork: forking a process that may hold threads is deprecated (3.12 warns,
    # and warnings are errors here); start-up costs well under a second.
    with ProcessPoolExecutor(JOBS, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(run_seed, configs, chunksize=25))


@pytest.mark.sim
def test_bounded_seed_range_keeps_every_invariant() -> None:
    configs = [SimConfig(seed=seed, steps=STEPS) for seed in range(SEEDS)]
    results = _run_range(configs)
    failures = [r.report() for r in results if not r.ok]
    assert not failures, "\n\n".join(failures[:5])
    assert sum(r.steps for r in results) >= SEEDS * STEPS
    # The mix really exercised the cluster, not just ticked it.
    total = {
        name: sum(r.stats.get(name, 0) for r in results)
        for name in (
            "crash",
            "torn_crash",
            "partition",
            "isolate_leader",
            "membership",
            "remove_leader",
            "transfer",
            "compact",
            "snapshot_delivered",
        )
    }
    assert all(count > 20 for count in total.values()), total
    # Every history was decided: none exhausted the checker's search budget.
    assert sum(r.stats.get("linearizability_unknown", 0) for r in results) == 0


@pytest.mark.sim
@pytest.mark.parametrize("nodes", [3, 5])
def test_calm_cluster_serves_every_client(nodes: int) -> None:
    for seed in range(20):
        result = run_seed(SimConfig(seed=seed, steps=STEPS, nodes=nodes, faults=False))
        assert result.ok, result.report()
        assert result.stats["ops"] > 50
