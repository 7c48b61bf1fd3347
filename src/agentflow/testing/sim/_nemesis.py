"""The fault schedule: every so often, the nemesis picks one fault from the seed's mix.

Faults: symmetric, one-way (asymmetric) and bridge partitions and their healing; crashes
between Readies and in the middle of one (before persisting, before sending, before
applying); restarts from durable storage; lossy, duplicating, slow links; membership
changes (add a learner, promote it, remove a voter — the leader too — down to one voter);
leadership transfers;
log compaction at a node's applied index. A node whose removal was applied is retired
(stopped for good) a little later, as an operator would.

BUGGIFY (each site enabled per seed with its own odds, see `BUGGIFY_SITES`): random faults
rarely land where consensus bugs hide, so some faults are aimed. A node that has just won an
election crashes after persisting, before its first appends go out (a leader whose entries
of the new term exist on its disk only); a leader crashes right after an acknowledgement
that leaves its tail replicated on some followers but not all (Figure 8's partial
replication); clogged links hold their messages back and flush them just as a new leader is
elected; a leader's own write stalls, and the leader may crash before it completes; a
client is left talking to a leader that is cut off, to read what it should no longer serve,
and the partition then holds long enough for the others to elect a leader and write. Some
seeds (on a stream of their own) steer membership to a lone voter with a learner and stall
and crash its writes: the one configuration where a leader that counted its own unpersisted
copy would commit, and send the learner, an entry its crash then loses.
Together with one-entry messages (`max_size_per_msg=1`, drawn per seed) these
reach in a few hundred seeds the interleavings random faults reach once in thousands.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from agentflow.raft import (
    Message,
    MessageType,
    StateRole,
)
from agentflow.testing.sim._clients import ClientDriver
from agentflow.testing.sim._events import EV_CAMPAIGN, EV_DELIVER, EV_NEMESIS
from agentflow.testing.sim._figure8 import Figure8, durable_term, figure8_for
from agentflow.testing.sim._membership_faults import MembershipFaults
from agentflow.testing.sim._network import LinkFaults

if TYPE_CHECKING:
    from agentflow.testing.sim._shell import SimNode
    from agentflow.testing.sim._simulation import Simulation

__all__ = ["Nemesis"]

# The actions that reshape or heal the network's partitions.
_RESHAPES = frozenset({"partition", "one_way", "bridge", "isolate_leader", "heal"})
_SHRINK_ODDS = (0.0, 0.5, 1.0)  # a seed's odds that a membership change steers to one voter


class Nemesis(MembershipFaults):
    def __init__(self, sim: Simulation) -> None:
        self._sim = sim
        self._rng = sim.rng
        # BUGGIFY (swarm): some seeds steer membership toward one voter with learners, the
        # configuration where a leader's own unpersisted copy alone is a majority. Drawn from
        # a stream of its own, so that the other seeds' schedules are what they always were.
        self._shrink = random.Random(f"shrink.{sim.config.seed}")
        self._shrink_odds = self._shrink.choice(_SHRINK_ODDS) if sim.mix.buggify else 0.0
        if sim.lone:
            self._shrink_odds = 1.0  # it starts there
        weights = dict(sim.mix.weights)
        if self._shrink_odds:  # ... where the leader's slow writes stall, and crash in them
            weights["membership"] = max(weights.get("membership", 0), 6)
            for site in ("stall_write", "crash_in_write"):
                sim.mix.buggify[site] = max(sim.mix.buggify.get(site, 0.0), 0.3)
        self._actions = [name for name, weight in weights.items() if weight > 0]
        self._weights = [weights[name] for name in self._actions]
        self._max_members = sim.node_count + 2
        self._silenced: set[str] = set()  # silenced by a BUGGIFY crash until they restart
        self._hold_until_ms = 0  # no partition change before then (BUGGIFY)
        self._calm_until_ms = 0  # no fault at all before then (BUGGIFY)
        self._read_new_leader = False  # the clients move to the next leader elected (BUGGIFY)
        # Removed members not yet shut down: node id -> (index of its removal, the voters
        # of the configuration that removal made).
        self._removals: dict[str, tuple[int, frozenset[str]]] = {}
        director = figure8_for(sim.config.seed) if sim.mix.buggify and not sim.lone else None
        self._figure8 = Figure8(sim, director) if director is not None else None

    @property
    def directed(self) -> bool:
        """Does the Figure 8 director walk this seed?"""
        return self._figure8 is not None

    def begin(self) -> None:
        if self._actions:
            self._sim.schedule(self._interval(), EV_NEMESIS)

    def _interval(self) -> int:
        every = self._sim.mix.nemesis_every_ms
        return self._rng.randint(every // 2, every * 3 // 2)

    def strike(self) -> None:
        sim = self._sim
        if sim.quiet:
            return
        action = self._rng.choices(self._actions, self._weights)[0]
        if (self._figure8 is not None and self._figure8.busy) or sim.now_ms < self._calm_until_ms:
            sim.schedule(self._interval(), EV_NEMESIS)  # an aimed walk is not disturbed
            return
        if action in _RESHAPES and sim.now_ms < self._hold_until_ms:
            sim.schedule(self._interval(), EV_NEMESIS)  # BUGGIFY: the partition holds
            return
        done = getattr(self, f"_do_{action}")()
        if done:
            sim.count(action)
            sim.trace(f"{sim.now_ms} nemesis {action} {done}")
        sim.schedule(self._interval(), EV_NEMESIS)

    # -- helpers ----------------------------------------------------------------------------

    def _in_play(self) -> list[str]:
        return [i for i in self._sim.nodes if i not in self._sim.retired]

    def _alive(self) -> list[SimNode]:
        return [n for i, n in self._sim.nodes.items() if n.alive and i not in self._sim.retired]

    # -- network ----------------------------------------------------------------------------

    def _do_partition(self) -> str:
        ids = self._in_play()
        self._rng.shuffle(ids)
        cut = self._rng.randint(1, max(1, len(ids) // 2))
        self._sim.network.partition([ids[:cut], ids[cut:]])
        return self._sim.network.description

    def _do_one_way(self) -> str:
        ids = self._in_play()
        node = self._rng.choice(ids)
        inbound = self._rng.random() < 0.5
        self._sim.network.isolate_one_way(node, [i for i in ids if i != node], inbound=inbound)
        return self._sim.network.description

    def _do_bridge(self) -> str:
        ids = self._in_play()
        if len(ids) < 3:
            return ""
        self._rng.shuffle(ids)
        bridge, rest = ids[0], ids[1:]
        half = len(rest) // 2
        self._sim.network.bridge(rest[:half], bridge, rest[half:])
        return self._sim.network.description

    def _do_isolate_leader(self) -> str:
        """Cut the leader off alone: the fault that makes deposed leaders, uncommitted
        tails and competing terms — where Raft's subtle rules matter."""
        leader = self._sim.leader()
        if leader is None:
            return ""
        others = [i for i in self._in_play() if i != leader.id]
        self._sim.network.partition([[leader.id], others])
        clients = self._sim.config.clients
        voters = leader.conf_state.voters
        up = [n.id for n in self._alive() if n.id in voters and n.id != leader.id]
        electable = 2 * len(up) > len(voters)  # the others can elect a leader and write
        drivers = self._sim.clients  # the key-value clients only: they read through a node
        if (
            isinstance(drivers, ClientDriver)
            and clients > 1
            and electable
            and self._fires("stick_to_isolated")
        ):
            self._read_new_leader = False  # the clients stay with the old leader this time
            writer = self._rng.randint(1, clients)  # the others keep reading the old leader
            # ... for long enough that the others elect a leader and write past it.
            self._hold_until_ms = self._sim.now_ms + self._rng.randint(500, 1500)
            for client in range(1, clients + 1):
                # The writer follows leader hints from a node of the majority side.
                node_id = self._rng.choice(up) if client == writer else leader.id
                until = 0 if client == writer else self._hold_until_ms
                drivers.stick(client, node_id, until_ms=until)
            drivers.watch_stale(leader.id, writer, self._hold_until_ms)
            self._calm_until_ms = self._hold_until_ms  # nothing else strikes meanwhile
            self._unclog()  # ... and the others can reach each other to elect and write
            self._do_calm()
            paused = self._rng.random() < 0.8
            if paused:  # its clock stalls: check-quorum cannot depose it in that window
                self._sim.freeze_clock(leader.id, self._hold_until_ms)
            self._strike("stick_to_isolated", f"all clients but {writer}{' paused' * paused}")
        return self._sim.network.description

    def _do_crash_leader(self) -> str:
        leader = self._sim.leader()
        if leader is None:
            return ""
        if self._rng.random() < 0.5:
            self._sim.crash_node(leader)
            return leader.id
        leader.crash_stage = self._rng.randint(0, 2)
        return f"{leader.id} at stage {leader.crash_stage}"

    def settle(self) -> None:
        """Heal every link and restart every member that is down (the director's start)."""
        self._sim.network.heal()
        self._unclog()
        for node_id, node in self._sim.nodes.items():
            if not node.alive and node_id not in self._sim.retired:
                self._silenced.discard(node_id)
                self._sim.start_node(node)
        self._sim.trace(f"{self._sim.now_ms} settled")

    def _do_heal(self) -> str:
        self._sim.network.heal()
        self._unclog()
        return "healed"

    def _do_clog(self) -> str:
        """Clog a node's links, in or out or both: its messages wait instead of going."""
        ids = self._in_play()
        node = self._rng.choice(ids)
        way = self._rng.choice(("in", "out", "both"))
        others = [i for i in ids if i != node]
        links = [(i, node) for i in others] if way != "out" else []
        links += [(node, i) for i in others] if way != "in" else []
        self._sim.network.clog(links)
        return f"{node} {way}"

    def _unclog(self) -> int:
        held = self._sim.network.unclog()
        for message in held:
            self._sim.schedule(self._rng.randint(1, 3), EV_DELIVER, message)
        return len(held)

    # -- BUGGIFY sites: faults aimed at a moment ----------------------------------------------

    def _fires(self, site: str) -> bool:
        odds = self._sim.mix.buggify.get(site, 0.0)
        return odds > 0.0 and not self._sim.quiet and self._rng.random() < odds

    def before_io(self, node: SimNode, message: Message | None) -> None:
        """The node's Readies are about to be performed (``message``: the one it just stepped).
        If it has just won an election, clogged links may flush now, the worst moment. Aim a
        crash after they are persisted, with nothing they send going out, at a node
        that has just won an election (its first entry on its disk only), at a leader that
        has just appended a proposal (its uncommitted tail on its disk only), or at a leader
        that an acknowledgement leaves with its tail replicated on some followers but not
        all (Figure 8's partial replication)."""
        raft = node.raft
        if raft is None or raft.role is not StateRole.LEADER or node.crash_stage is not None:
            return
        if self._figure8 is not None and (self._figure8.aim(node, message) or self._figure8.busy):
            return  # while the director walks to Figure 8, the other sites hold off
        if self._sim.now_ms < self._calm_until_ms:
            return  # ... and while an aimed partition waits for its moment
        if node.role is not StateRole.LEADER:  # it has just won an election
            if self._sim.network.has_clogs and self._fires("unclog_on_election"):
                self._strike("unclog_on_election", f"{self._unclog()} held")
            if self._read_new_leader:
                self._read_new_leader = False
                self._read_at_once(node.id)
            site = "mute_new_leader"
        elif message is None:
            if raft.status.last_index <= node.storage.last_index():
                return
            site = "crash_fresh_tail"
        elif message.type is MessageType.APPEND_RESP and not message.reject:
            status = raft.status
            if status.commit > node.applied and self._hush_commit(node):
                return
            if message.index >= status.last_index or status.commit >= status.last_index:
                return
            # Acknowledged up to an entry of an earlier term: the moment §5.4.2 decides.
            old = durable_term(node, message.index) < status.term
            site = "crash_old_term_ack" if old else "crash_partial"
            if old and self._overwriter(node, message.index) and self._sim.mix.buggify.get(site):
                site = "crash_old_term_ack!"  # Figure 8 (c): another log holds a later term
        else:
            return
        if site.endswith("!"):
            site = site[:-1]  # its moment: fires whenever the seed enables it
        elif not self._fires(site):
            return
        if site == "crash_old_term_ack":
            # Figure 8 (c)-(d): it crashes once its messages went out (a commit index that a
            # broken §5.4.2 rule advanced would reach the followers), and a log of a later
            # term campaigns first.
            node.crash_stage = 2
            self._strike(site, node.id)
            delay = self._sim.config.election_tick * self._sim.config.tick_ms
            self._sim.schedule(delay + self._rng.randint(0, 20), EV_CAMPAIGN, node.id)
        else:
            self.crash_silent(node, 1, site)

    def crash_silent(self, node: SimNode, stage: int, site: str) -> None:
        """Crash ``node`` at ``stage`` of the Readies it is about to perform (1: persisted,
        nothing sent; 3: persisted and applied, nothing sent). A leader's appends may leave
        before its write (thesis §10.2.1): it is silenced first, until it restarts."""
        self._sim.network.silence(node.id, [i for i in self._in_play() if i != node.id])
        self._silenced.add(node.id)
        node.crash_stage = stage
        self._strike(site, node.id)

    def _overwriter(self, leader: SimNode, index: int) -> bool:
        """Does another voter's log hold, at ``index``, an entry of a later term than the
        leader's (Figure 8's S5)? Then it may win the next election and overwrite it."""
        term = durable_term(leader, index)
        return any(
            durable_term(node, index) > term
            for node_id, node in self._sim.nodes.items()
            if node_id != leader.id and node_id not in self._sim.retired
        )

    def _hush_commit(self, node: SimNode) -> bool:
        """BUGGIFY: an acknowledgement has just committed entries on the leader, which will
        apply them and answer their clients; cut it off before its commit index goes out.
        The others elect a leader whose commit index lags what clients were told, and the
        clients read there at once: what a new leader may answer before it commits an
        entry of its own term (thesis §6.4)."""
        drivers = self._sim.clients
        if self._sim.now_ms < self._hold_until_ms:
            return False  # another aimed partition holds: leave it be
        if not isinstance(drivers, ClientDriver) or not self._fires("hush_commit"):
            return False
        others = [i for i in self._in_play() if i != node.id]
        self._sim.network.partition([[node.id], others])
        self._hold_until_ms = self._sim.now_ms + self._rng.randint(300, 1000)
        self._read_new_leader = True
        self._strike("hush_commit", node.id)
        return True

    def _read_at_once(self, node_id: str) -> None:
        drivers = self._sim.clients
        if isinstance(drivers, ClientDriver):
            drivers.read_at_once(node_id)
            self._sim.trace(f"{self._sim.now_ms} clients read at new leader {node_id}")

    def campaign(self, node_id: str, *, own: bool) -> None:
        """EV_CAMPAIGN: ``node_id`` itself campaigns (``own``), or the voter whose log ends in
        the latest term after ``node_id`` crashed."""
        if not own:
            self.campaign_longest_term(node_id)
        elif node_id not in self._sim.retired:
            self._campaign_now(self._sim.nodes[node_id], "campaign")

    def campaign_longest_term(self, crashed: str) -> None:
        """BUGGIFY, after a leader crashed on an acknowledgement of an earlier term's entry:
        the voter whose log ends in the latest term (restarted if down) campaigns first, the
        one that overwrites that entry if a broken commit rule had counted it committed."""
        sim = self._sim
        candidates = [
            node
            for node_id, node in sim.nodes.items()
            if node_id != crashed
            and node_id not in sim.retired
            and node_id in node.conf_state.voters
        ]
        if not candidates:
            return
        best = max(candidates, key=lambda n: (_last_term(n), n.storage.last_index(), n.id))
        self._campaign_now(best, "campaign_longest_term")

    def _campaign_now(self, node: SimNode, site: str) -> None:
        """``node`` (restarted if down) campaigns at once."""
        sim = self._sim
        if not node.alive:
            if node.id in self._silenced:
                self._silenced.discard(node.id)
                sim.network.unsilence(node.id)
            sim.start_node(node)
        raft = node.raft
        if raft is not None and raft.role is not StateRole.LEADER:
            raft.campaign()
            sim.after_io(node)
            self._strike(site, node.id)

    def write_delay_ms(self) -> int:
        """How long a leader's own write takes: up to the mix's bound, or (BUGGIFY) stalled
        long enough for its appends to be acknowledged and its commit index to go out."""
        if self._fires("stall_write"):
            self._sim.count("stall_write")
            return self._rng.randint(20, 150)
        return self._rng.randint(1, max(1, self._sim.mix.leader_write_ms_max))

    def crash_in_write(self, node: SimNode) -> bool:
        """BUGGIFY: the node crashes just before its slow write completes (the write lost)."""
        if not self._fires("crash_in_write"):
            return False
        self._sim.crash_node(node)
        self._strike("crash_in_write", node.id)
        return True

    def _strike(self, site: str, done: str) -> None:
        self._sim.count(site)
        self._sim.trace(f"{self._sim.now_ms} buggify {site} {done}")

    def _do_lossy(self) -> str:
        rng = self._rng
        faults = LinkFaults(
            drop_rate=rng.choice((0.05, 0.2, 0.4)),
            duplicate_rate=rng.choice((0.0, 0.1, 0.3)),
            delay_ms_max=rng.choice((10, 50, 120)),
        )
        self._sim.network.faults = faults
        return f"drop {faults.drop_rate} dup {faults.duplicate_rate} delay {faults.delay_ms_max}"

    def _do_calm(self) -> str:
        mix = self._sim.mix
        self._sim.network.faults = LinkFaults(
            drop_rate=mix.drop_rate,
            duplicate_rate=mix.duplicate_rate,
            delay_ms_max=mix.delay_ms_max,
        )
        return "baseline"

    # -- processes --------------------------------------------------------------------------

    def _do_crash(self) -> str:
        alive = self._alive()
        if not alive:
            return ""
        node = self._rng.choice(alive)
        self._sim.crash_node(node)
        return node.id

    def _do_torn_crash(self) -> str:
        alive = self._alive()
        if not alive:
            return ""
        node = self._rng.choice(alive)
        node.crash_stage = self._rng.randint(0, 2)
        return f"{node.id} at stage {node.crash_stage}"

    def _do_restart(self) -> str:
        down = [n for i, n in self._sim.nodes.items() if not n.alive and i not in self._sim.retired]
        if not down:
            return ""
        if self._fires("restart_oldest"):
            node = min(down, key=lambda n: self._sim.crashed_at.get(n.id, 0))  # Figure 8 (d)
            self._sim.count("restart_oldest")
        else:
            node = self._rng.choice(down)
        if node.id in self._silenced:
            self._silenced.discard(node.id)
            self._sim.network.unsilence(node.id)
        self._sim.start_node(node)
        return node.id

    def _do_compact(self) -> str:
        alive = self._alive()
        if not alive:
            return ""
        node = self._rng.choice(alive)
        return f"{node.id} at {node.applied}" if node.compact() else ""

    # -- cluster operations -----------------------------------------------------------------

    def _do_transfer(self) -> str:
        leader = self._sim.leader()
        if leader is None or leader.raft is None:
            return ""
        others = sorted(leader.conf_state.voters - {leader.id})
        if not others:
            return ""
        target = self._rng.choice(others)
        leader.raft.transfer_leadership(target)
        self._sim.after_io(leader)
        return f"{leader.id} -> {target}"


def _last_term(node: SimNode) -> int:
    return durable_term(node, node.storage.last_index())
