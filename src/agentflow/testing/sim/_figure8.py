"""BUGGIFY, directed: walk the cluster into the state of the Raft paper's Figure 8.

Random faults reach Figure 8's precondition (an entry of an earlier term at the same index as
another voter's entry of a later term) in a few seeds out of a hundred, and then rarely at
the moment a broken §5.4.2 rule would act on it. A director, on for a share of seeds (on a
random stream of its own, so the other seeds keep their schedules), aims four faults in turn:

1. ``tail``: a leader crashes with a fresh proposal on its own disk only (Figure 8 (a));
2. ``second``: the next leader, whose log does not hold that entry, crashes right after it
   persisted its own first entry, nothing sent (Figure 8 (b): a later term at that index);
3. ``comeback``: the first leader restarts and campaigns at once; it may win the next term;
4. ``old_ack``: once an acknowledgement puts its entry of the earlier term on a majority, it
   crashes right after applying what that let it commit (nothing more sent) and the voter
   whose log ends in the latest term campaigns first (Figure 8 (c)-(d)).

Correct code commits nothing at step 4 (an entry of an earlier term is never committed by
counting replicas) and the run goes on; a leader that counts replicas for it applies it, and
the next leader applies the other entry at that index: state-machine safety fails. The
director then starts over; a step whose moment passes (another node wins, the entry is
already gone) is abandoned the same way.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from agentflow.raft import CompactedError, Message, MessageType, StateRole, UnavailableError
from agentflow.testing.sim._events import EV_CAMPAIGN

if TYPE_CHECKING:
    from agentflow.testing.sim._shell import SimNode
    from agentflow.testing.sim._simulation import Simulation

__all__ = ["FIGURE8_SEEDS", "Figure8", "figure8_for"]

FIGURE8_SEEDS = 0.25  # the share of biased key-value seeds the director walks
_WARMUP_MS = 300  # let the first leader settle before step 1
_PATIENCE_MS = 3000  # a step not reached by then is abandoned
_TAIL_ODDS = 0.3  # step 1 fires at this share of its moments, so its index varies


def figure8_for(seed: int) -> random.Random | None:
    """The director's own random stream for ``seed``, or None where it is off."""
    rng = random.Random(f"figure8.{seed}")
    return rng if rng.random() < FIGURE8_SEEDS else None


class Figure8:
    def __init__(self, sim: Simulation, rng: random.Random) -> None:
        self._sim = sim
        self._rng = rng
        self.stage = "tail"
        self._since_ms = 0
        self._first = ""  # the leader of step 1
        self._index = 0  # its tail entry
        self._term = 0

    @property
    def busy(self) -> bool:
        """Between its first step and its last (or abandoning them)."""
        return self.stage != "tail"

    def aim(self, node: SimNode, message: Message | None) -> bool:
        """``node`` leads (or has just won) and is about to perform its Readies after
        stepping ``message``: strike if this is the current step's moment."""
        sim = self._sim
        if self.stage != "tail" and sim.now_ms - self._since_ms > _PATIENCE_MS:
            self._restart()
        just_won = node.role is not StateRole.LEADER
        if self.stage == "tail":
            return self._tail(node, message, just_won)
        if self.stage == "second" and just_won:
            return self._second(node)
        if self.stage == "comeback" and just_won:
            if node.id != self._first:
                self._restart()
                return False
            self._next("old_ack")
            return False
        if self.stage == "old_ack" and node.id == self._first and message is not None:
            return self._old_ack(node, message)
        return False

    # -- the steps --------------------------------------------------------------------------

    def _tail(self, node: SimNode, message: Message | None, just_won: bool) -> bool:
        raft = node.raft
        assert raft is not None
        if just_won or message is not None or self._sim.now_ms < _WARMUP_MS:
            return False
        status = raft.status
        if status.last_index <= node.storage.last_index() or self._rng.random() >= _TAIL_ODDS:
            return False  # not a fresh proposal of its own
        self._first, self._index, self._term = node.id, status.last_index, status.term
        self._sim.nemesis.settle()  # the walk starts from a whole cluster
        self._crash_silent(node, stage=1)
        self._next("second")
        return True

    def _second(self, node: SimNode) -> bool:
        if node.id == self._first or durable_term(node, self._index) == self._term:
            self._restart()  # it holds the entry: no later term will sit at its index
            return False
        self._crash_silent(node, stage=1)
        first = self._sim.nodes[self._first]
        # It campaigns at once, and again a few ticks later: its first term may be the one
        # the others just voted in.
        tick = self._sim.config.tick_ms
        delay = self._rng.randint(1, tick * 3)
        self._sim.schedule(delay, EV_CAMPAIGN, first.id, "self")
        self._sim.schedule(delay + tick * self._rng.randint(2, 4), EV_CAMPAIGN, first.id, "self")
        self._next("comeback")
        return True

    def _old_ack(self, node: SimNode, message: Message) -> bool:
        if message.type is not MessageType.APPEND_RESP or message.reject:
            return False
        if durable_term(node, self._index) != self._term or not self._overwritten(node):
            self._restart()
            return False
        nodes = self._sim.nodes
        voters = node.conf_state.voters
        holders = sum(
            1 for v in voters if v in nodes and durable_term(nodes[v], self._index) == self._term
        )
        if holders * 2 <= len(voters):
            return False  # not on a majority yet: wait for the next acknowledgement
        self._crash_silent(node, stage=3)
        # The voter holding the latest term at that index campaigns once the others' leases
        # of the crashed leader ran out.
        later = max(
            (o for o in nodes.values() if o.id in voters and o.id not in self._sim.retired),
            key=lambda o: (durable_term(o, self._index), o.id),
        )
        delay = self._sim.config.election_tick * self._sim.config.tick_ms
        self._sim.schedule(delay + self._rng.randint(0, 20), EV_CAMPAIGN, later.id, "self")
        self._restart()
        return True

    # -- helpers ----------------------------------------------------------------------------

    def _overwritten(self, leader: SimNode) -> bool:
        return any(
            durable_term(other, self._index) > self._term
            for other_id, other in self._sim.nodes.items()
            if other_id != leader.id and other_id not in self._sim.retired
        )

    def _crash_silent(self, node: SimNode, *, stage: int) -> None:
        """Crash ``node`` at ``stage`` of this Ready (1: persisted, nothing sent; 3: persisted
        and applied, nothing sent)."""
        self._sim.nemesis.crash_silent(node, stage, f"figure8_{self.stage}")

    def _next(self, stage: str) -> None:
        self.stage = stage
        self._since_ms = self._sim.now_ms

    def _restart(self) -> None:
        self._next("tail")


def durable_term(node: SimNode, index: int) -> int:
    """The term of ``index`` in the node's durable log; 0 if compacted or not there yet."""
    try:
        return node.storage.term(index)
    except (CompactedError, UnavailableError):
        return 0
