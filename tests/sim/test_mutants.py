"""`make mutants`: the catalogue applies to today's code, the hook applies a mutant in a fresh
process and refuses one that does not fit, and a small budget finds known bugs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentflow.testing.mutants import (
    CATALOGUE,
    Mutant,
    MutantRefusedError,
    install,
    mutated_source,
)
from agentflow.testing.mutants._hook import source_path

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _runner(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    cmd = [sys.executable, "-m", "agentflow.testing.mutants", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=120)


def test_every_mutant_still_fits_the_code_it_mutates() -> None:
    names = [m.name for m in CATALOGUE]
    assert len(names) == len(set(names))
    for mutant in CATALOGUE:
        mutated = mutated_source(mutant)  # refuses a snippet that is not there exactly once
        assert mutated != source_path(mutant).read_text(encoding="utf-8"), mutant.name
        compile(mutated, mutant.file, "exec")
    assert {m.model for m in CATALOGUE} == {"raft", "system"}


def test_a_snippet_that_moved_is_refused() -> None:
    stale = Mutant(
        name="stale",
        file="raft/_log.py",
        old="this line is not in the file\n",
        new="",
        why="test",
    )
    with pytest.raises(MutantRefusedError, match="occurs 0 times"):
        mutated_source(stale)
    missing = Mutant(name="gone", file="raft/_nope.py", old="x", new="y", why="test")
    with pytest.raises(MutantRefusedError, match="no file"):
        mutated_source(missing)


def test_a_module_already_imported_is_refused() -> None:
    import agentflow.raft._log  # noqa: F401  (the point: it is loaded already)

    with pytest.raises(MutantRefusedError, match="already imported"):
        install(CATALOGUE[0])


def test_the_runner_refuses_an_unknown_mutant_in_one_line() -> None:
    done = _runner("no-such-mutant", "--seeds", "1")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "no mutant no-such-mutant" in done.stderr


@pytest.mark.sim
def test_a_small_budget_finds_the_vote_and_pre_vote_mutants() -> None:
    """A vote without §5.4.1's up-to-date check, and a pre-vote grant recorded as a vote,
    each found by its first failing seed in a budget the suite affords (nearly every seed
    finds them; the rarer ones, the §5.4.2 commit rule first, are `make mutants`' job)."""
    done = _runner(
        "vote-without-up-to-date-check",
        "pre-vote-grant-records-vote",
        "--seeds",
        "20",
        "--steps",
        "2000",
        "--jobs",
        "2",
        "--chunk",
        "10",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("--\n", 1)[1]
    assert "vote-without-up-to-date-check: found by seed" in table
    assert "pre-vote-grant-records-vote: found by seed" in table
    assert "2/2 mutants found" in table


def test_the_code_as_written_passes_through_the_same_path() -> None:
    done = _runner("none", "--seeds", "3", "--steps", "500", "--jobs", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "none (the code as written): all 3 seeds pass" in done.stdout


def test_state_machine_mutants_are_found_by_the_system_model() -> None:
    names = ("task-stale-token-accepted", "lock-limit-off-by-one", "lock-renew-after-expiry")
    done = _runner(*names, "--seeds", "80", "--jobs", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("--\n", 1)[1]  # after the lines printed as verdicts came in
    for name in names:
        assert f"{name}: found by seed" in table
    assert "3/3 mutants found" in table


@pytest.mark.sim
def test_the_directed_walks_find_the_mutants_random_faults_miss() -> None:
    """The Figure 8 director, the lone-voter seeds and the stale-read watch: mutants that
    random faults almost never reach are each found in under a hundred seeds."""
    names = ("commit-rule", "commit-before-own-persist", "read-index-without-heartbeat")
    done = _runner(*names, "--seeds", "100", "--jobs", "2", "--chunk", "50")
    assert done.returncode == 0, done.stdout + done.stderr
    table = done.stdout.split("--\n", 1)[1]
    for name in names:
        assert f"{name}: found by seed" in table
    assert "3/3 mutants found" in table
