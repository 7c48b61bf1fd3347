"""Deterministic simulation of a whole Raft cluster in one process, driven by one seed.

Owns the simulated network (drops, duplicates, delays, partitions), clock and fault
schedule, the shells that drive each `agentflow.raft.RaftNode` through its Ready contract
against a durable in-memory storage, the safety invariants checked after every step, the
liveness check after faults heal, and the simulated key-value clients whose history is
checked for linearizability; or, with ``SimConfig(model="system")``, the real ``StateMachine``
under simulated clients, workers and the leader's timers, with the system's end-to-end
invariants (``_system*.py``). It must never be imported by production code, and it must
never read the wall clock or the global random source: a seed replays exactly. Entry
points: `run_seed(SimConfig(seed=...))`, and `python -m agentflow.testing.sim --seeds N
--seed-base S --steps M`.
"""

from agentflow.testing.sim._config import ReadMode, SimConfig
from agentflow.testing.sim._invariants import InvariantViolationError, SafetyChecker
from agentflow.testing.sim._network import LinkFaults, SimNetwork
from agentflow.testing.sim._simulation import (
    LivenessViolationError,
    SimResult,
    Simulation,
    run_seed,
)

__all__ = [
    "InvariantViolationError",
    "LinkFaults",
    "LivenessViolationError",
    "ReadMode",
    "SafetyChecker",
    "SimConfig",
    "SimNetwork",
    "SimResult",
    "Simulation",
    "run_seed",
]
