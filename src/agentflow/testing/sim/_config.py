"""What one simulated run is: its seed, its length, and the fault mix the seed draws."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from agentflow.raft import Config

__all__ = ["BUGGIFY_SITES", "FaultMix", "ReadMode", "SimConfig", "draw_raft_config", "lone_for"]

BUGGIFY_SEEDS = 0.75  # the share of seeds with BUGGIFY on
LONE_SEEDS = 0.15  # the share of biased key-value seeds that start with one voter
# Each BUGGIFY site and the odds a seed may give it (0: off for that seed). A site fires at
# its moment with the seed's odds; see `Nemesis` for what each one does.
BUGGIFY_SITES: dict[str, tuple[float, ...]] = {
    "mute_new_leader": (0.0, 0.05, 0.2),  # a new leader crashes before its first appends
    "crash_fresh_tail": (0.0, 0.05, 0.15),  # a leader crashes with a proposal on its disk only
    "crash_partial": (0.0, 0.02, 0.1),  # a leader crashes while its tail is partly replicated
    # ... right after an acknowledgement of an entry of an earlier term (Figure 8 (c))
    "crash_old_term_ack": (0.0, 0.5, 1.0),
    "unclog_on_election": (0.0, 0.5, 1.0),  # clogged links flush just as a leader is elected
    "restart_oldest": (0.0, 0.5, 1.0),  # the node down longest restarts first (Figure 8 (d))
    "stick_to_isolated": (0.0, 0.5, 1.0),  # a client keeps talking to an isolated leader
    # ... or a leader cut off just as an acknowledgement commits, clients reading at the next
    "hush_commit": (0.0, 0.05, 0.2),
    "stall_write": (0.0, 0.1, 0.3),  # a leader's own write stalls while its appends go out
    "crash_in_write": (0.0, 0.1, 0.3),  # a leader crashes before its slow write completes
}


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
    # BUGGIFY: bias the fault schedule toward the moments where consensus bugs hide (see
    # `FaultMix.buggify`); False replays the unbiased schedule of earlier versions exactly.
    buggify: bool = True

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
        if not self.buggify:
            parts.append("--no-buggify")
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
    # BUGGIFY sites (FoundationDB's term): each seed enables some, each with its own odds of
    # firing whenever its moment comes (see `Nemesis`): empty when the seed is not biased.
    buggify: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def draw(rng: random.Random, *, enabled: bool, buggify: bool = False) -> FaultMix:
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
        drop_rate = rng.choice((0.0, 0.02, 0.1, 0.25))
        duplicate_rate = rng.choice((0.0, 0.05, 0.2))
        delay_ms_max = rng.choice((4, 15, 40))
        nemesis_every_ms = rng.choice((60, 150, 300))
        leader_write_ms_max = rng.choice((0, 2, 8, 25))
        sites: dict[str, float] = {}
        # Drawn last, so that an unbiased seed consumes exactly what it always did. As in
        # FoundationDB, BUGGIFY is itself on for only some seeds: aimed faults also prevent
        # some schedules (a leader crashed early cannot linger deposed), which the others keep.
        if buggify and rng.random() < BUGGIFY_SEEDS:
            weights["clog"] = rng.choice((0, 2, 4))
            sites = {site: rng.choice(odds) for site, odds in BUGGIFY_SITES.items()}
            if sites["stick_to_isolated"]:  # a site needs its moment to come
                weights["isolate_leader"] = max(weights["isolate_leader"], 3)
        return FaultMix(
            drop_rate=drop_rate,
            duplicate_rate=duplicate_rate,
            delay_ms_max=delay_ms_max,
            nemesis_every_ms=nemesis_every_ms,
            weights=weights,
            leader_write_ms_max=leader_write_ms_max,
            buggify=sites,
        )


def lone_for(seed: int) -> bool:
    """BUGGIFY (swarm, on a stream of its own): does a biased seed found a cluster of one
    voter, which the nemesis gives a learner and slow, crashing writes?"""
    return random.Random(f"lone.{seed}").random() < LONE_SEEDS


def draw_raft_config(rng: random.Random, config: SimConfig) -> Config:
    """The core's settings vary by seed too: tiny message and in-flight limits split the
    log into many appends and partial acknowledgements (where commit rules are tested);
    runs without pre-vote or check-quorum see disruptive candidates and deposed leaders
    that linger."""
    if not config.faults:
        return Config(
            id="template", election_tick=config.election_tick, heartbeat_tick=config.heartbeat_tick
        )
    return Config(
        id="template",
        election_tick=config.election_tick,
        heartbeat_tick=config.heartbeat_tick,
        pre_vote=rng.random() < 0.75,
        # BUGGIFY: deposed leaders that never step down (no check-quorum) half the time.
        check_quorum=rng.random() < (0.5 if config.buggify else 0.75),
        # BUGGIFY: one-entry messages twice as often, where commit rules are tested.
        max_size_per_msg=rng.choice((1, 1, 64, 1 << 20) if config.buggify else (1, 64, 1 << 20)),
        max_inflight_msgs=rng.choice((1, 4, 256)),
    )
