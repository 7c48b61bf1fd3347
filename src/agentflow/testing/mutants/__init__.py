"""Mutation testing of the simulator: does it find the bugs we know how to make?

A catalogue (`CATALOGUE`) of deliberate bugs, each an exact snippet of our source and its
replacement: the §5.4.2 commit rule, a vote without the up-to-date check, a follower that
keeps conflicting entries, a leader counting its own unpersisted copy, ReadIndex without a
heartbeat round, state-machine fencing and lock mistakes, and more. `python -m
agentflow.testing.mutants` (`make mutants`) applies each in turn through an import hook, in
fresh processes (the source on disk is never touched), runs it against a fixed seed budget
and prints the first seed that fails, or "not found in N seeds". A snippet that no longer
matches exactly once is refused: the catalogue must follow the code. Never imported by
production code.
"""

from agentflow.testing.mutants._catalogue import CATALOGUE, NO_MUTANT, Mutant, by_name
from agentflow.testing.mutants._hook import MutantRefusedError, install, mutated_source

__all__ = [
    "CATALOGUE",
    "NO_MUTANT",
    "Mutant",
    "MutantRefusedError",
    "by_name",
    "install",
    "mutated_source",
]
