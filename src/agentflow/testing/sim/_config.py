"""What one simulated run is: its seed, its length, and the fault mix the seed draws."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass

__all__ = ["FaultMix", "ReadMode", "SimConfig"]


class ReadMode(enum.Enum):
    """How simulated clients read. Only READ_INDEX is correct; the others exist to prove that
    the linearizability checker catches a broken read path."""

    READ_INDEX = "read-index"
    FOLLOWER_LOCAL = "follower-local"  # any node's local state, no ReadIndex
    LEADER_LOCAL = "leader-local"  # whoever believes it leads, no ReadIndex


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    seed: int
    steps: int = 2000
    nodes: int | None = None  # 3 or 5; None lets the seed choose
    read_mode: ReadMode = ReadMode.READ_INDEX
    clients: int = 3
    keys: tuple[str, ...] = ("a", "b")
    tick_ms: int = 10
    election_tick: int = 10
    heartbeat_tick: int = 2
    client_timeout_ms: int = 400
    # Liveness bounds, in ticks after every fault healed, each on top of the one before: a
    # leader (tripled without pre-vote); a fresh entry committed; that entry applied on
    # every member (a learner may be far behind, catching up one entry per message).
    election_ticks: int = 100
    commit_ticks: int = 50
    converge_ticks: int = 1000
    log_check_every: int = 500  # steps between whole-log cross-checks
    faults: bool = True
    # What the nodes replicate: "kv", registers checked for linearizability; "system", the
    # real StateMachine under a workload of clients, workers and the leader's timers.
    model: str = "kv"

    def __post_init__(self) -> None:
        assert self.nodes in (None, 1, 3, 5), self.nodes
        assert self.model in ("kv", "system"), self.model
        assert self.steps >= 0 and self.clients >= 0 and self.keys, self

    def replay_command(self) -> str:
        parts = [
            "PYTHONPATH=src python -m agentflow.testing.sim",
            f"--seeds 1 --seed-base {self.seed} --steps {self.steps}",
        ]
        if self.nodes is not None:
            parts.append(f"--nodes {self.nodes}")
        if self.read_mode is not ReadMode.READ_INDEX:
            parts.append(f"--read-mode {self.read_mode.value}")
        if not self.faults:
            parts.append("--no-faults")
        if self.model != "kv":
            parts.append(f"--model {self.model}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultMix:
    """Swarm testing: each seed draws its own mix, so some runs are calm and some brutal, and
    rare interleavings get a fair chance instead of being averaged away."""

    drop_rate: float
    duplicate_rate: float
    delay_ms_max: int
    nemesis_every_ms: int
    weights: dict[str, int]
    leader_write_ms_max: int = 0  # a leader's own write may take up to this long (0: instant)

    @staticmethod
    def draw(rng: random.Random, *, enabled: bool) -> FaultMix:
        if not enabled:
            return FaultMix(
                drop_rate=0.0,
                duplicate_rate=0.0,
                delay_ms_max=5,
                nemesis_every_ms=10**9,
                weights={},
            )
        weights = {
            "partition": rng.choice((0, 2, 4)),
            "one_way": rng.choice((0, 1, 2)),
            "bridge": rng.choice((0, 1, 2)),
            "isolate_leader": rng.choice((0, 2, 4)),
            "crash_leader": rng.choice((0, 1, 2)),
            "heal": 4,
            "crash": rng.choice((0, 2, 3)),
            "torn_crash": rng.choice((0, 1, 2)),
            "restart": 4,
            "lossy": rng.choice((0, 2)),
            "calm": 2,
            "membership": rng.choice((0, 2, 4)),
            "transfer": rng.choice((0, 1, 3)),
            "compact": rng.choice((1, 3, 6)),
        }
        return FaultMix(
            drop_rate=rng.choice((0.0, 0.02, 0.1, 0.25)),
            duplicate_rate=rng.choice((0.0, 0.05, 0.2)),
            delay_ms_max=rng.choice((4, 15, 40)),
            nemesis_every_ms=rng.choice((60, 150, 300)),
            weights=weights,
            leader_write_ms_max=rng.choice((0, 2, 8, 25)),
        )
