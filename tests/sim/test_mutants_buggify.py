"""BUGGIFY: the aimed faults fire where they are meant to, replay exactly, and switch off."""

from __future__ import annotations

import random

import pytest

from agentflow.testing.sim import SimConfig, run_seed
from agentflow.testing.sim.__main__ import _parse, configs
from agentflow.testing.sim._config import BUGGIFY_SITES, FaultMix
from agentflow.testing.sim._figure8 import figure8_for
from agentflow.testing.sim._simulation import Simulation

SEEDS = range(60)
STEPS = 1500


def test_an_unbiased_seed_draws_no_site_and_nothing_more() -> None:
    for seed in range(50):
        plain, aimed = random.Random(seed), random.Random(seed)
        mix = FaultMix.draw(plain, enabled=True, buggify=False)
        assert mix.buggify == {} and "clog" not in mix.weights
        biased = FaultMix.draw(aimed, enabled=True, buggify=True)
        # Everything drawn before the sites is the same as without BUGGIFY (a site may only
        # raise the weight of the fault that brings its moment).
        assert biased.drop_rate == mix.drop_rate
        assert biased.leader_write_ms_max == mix.leader_write_ms_max
        assert all(biased.weights[k] >= v for k, v in mix.weights.items())
        assert set(biased.weights) - set(mix.weights) <= {"clog"}
    assert FaultMix.draw(random.Random(1), enabled=False, buggify=True).buggify == {}


def test_no_buggify_is_in_the_replay_command_and_the_command_line() -> None:
    config = SimConfig(seed=7, buggify=False)
    assert "--no-buggify" in config.replay_command()
    assert "--no-buggify" not in SimConfig(seed=7).replay_command()
    (parsed,) = configs(_parse(["--seeds", "1", "--seed-base", "7", "--no-buggify"]))
    assert parsed == SimConfig(seed=7, steps=2000, buggify=False)


@pytest.mark.sim
def test_every_site_fires_somewhere_and_the_code_as_written_survives_them() -> None:
    results = [run_seed(SimConfig(seed=seed, steps=STEPS)) for seed in SEEDS]
    failures = [r.report() for r in results if not r.ok]
    assert not failures, "\n\n".join(failures[:3])
    fired = {site: sum(r.stats.get(site, 0) for r in results) for site in BUGGIFY_SITES}
    fired["clog"] = sum(r.stats.get("clog", 0) for r in results)
    assert all(count > 0 for count in fired.values()), fired
    again = run_seed(SimConfig(seed=SEEDS[-1], steps=STEPS))
    assert again.digest == results[-1].digest and again.stats == results[-1].stats


@pytest.mark.sim
def test_without_buggify_no_site_fires() -> None:
    for seed in range(15):
        result = run_seed(SimConfig(seed=seed, steps=STEPS, buggify=False))
        assert result.ok, result.report()
        assert not set(result.stats) & {*BUGGIFY_SITES, "clog"}, result.stats


@pytest.mark.sim
def test_the_figure8_director_walks_every_step_and_the_code_as_written_survives() -> None:
    directed = [seed for seed in range(200) if Simulation(SimConfig(seed=seed)).nemesis.directed]
    assert all(figure8_for(seed) is not None for seed in directed)
    assert len(directed) >= 20, directed
    results = [run_seed(SimConfig(seed=seed, steps=2000)) for seed in directed]
    failures = [r.report() for r in results if not r.ok]
    assert not failures, "\n\n".join(failures[:3])
    steps = ("figure8_tail", "figure8_second", "figure8_old_ack")
    walked = {step: sum(r.stats.get(step, 0) for r in results) for step in steps}
    assert all(walked.values()), walked


@pytest.mark.sim
def test_a_lone_seed_founds_one_voter_which_gains_a_learner() -> None:
    lone = [seed for seed in range(60) if Simulation(SimConfig(seed=seed)).lone]
    assert lone, "no lone seed in the first 60"
    sim = Simulation(SimConfig(seed=lone[0], steps=STEPS))
    sim.run()
    leader = sim.leader()
    assert sim.node_count == 1 and leader is not None
    assert leader.conf_state.voters == {"1"} and leader.conf_state.learners
    assert not Simulation(SimConfig(seed=lone[0], nodes=3)).lone  # a fixed size wins
