"""The nemesis's membership faults: add a learner or voter, promote, remove (the leader too,
down to one voter), and retire removed members the way an operator would."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from agentflow.raft import ConfChange, ConfChangeType, MemoryStorage, ProposalDroppedError
from agentflow.testing.sim._events import EV_RETIRE

if TYPE_CHECKING:
    from agentflow.testing.sim._shell import Applied, SimNode
    from agentflow.testing.sim._simulation import Simulation

__all__ = ["MembershipFaults"]


class MembershipFaults:
    """Mixed into `Nemesis`, which sets these up."""

    _sim: Simulation
    _rng: random.Random
    _shrink: random.Random  # BUGGIFY's stream for steering to one voter
    _shrink_odds: float
    _max_members: int
    # Removed members not yet shut down: node id -> (index of its removal, the voters of
    # the configuration that removal made).
    _removals: dict[str, tuple[int, frozenset[str]]]

    def _do_membership(self) -> str:
        sim = self._sim
        leader = sim.leader()
        if leader is None or leader.raft is None:
            return ""
        conf = leader.conf_state
        members = conf.voters | conf.learners
        options: list[str] = []
        if len(members) < self._max_members:
            options.append("add")
        if conf.learners:
            options.append("promote")
        if len(conf.voters) >= 3:
            options.append("remove")
        elif len(conf.voters) == 2 and leader.id in conf.voters:
            options.append("shrink")  # down to the leader alone (with its learners, if any)
        if not options:
            return ""
        option = self._steer(conf.voters, conf.learners, leader.id)
        option = option or self._rng.choice(options)
        if option == "hold":
            return ""
        if option in ("add", "learner"):
            # A joiner starts from an empty storage, knowing no configuration: it learns
            # the membership from the leader, by replaying the log from the bootstrap
            # entries at index 1, or from a snapshot.
            node = sim.add_node(MemoryStorage())
            as_voter = option != "learner" and self._rng.random() < 0.2
            kind = ConfChangeType.ADD_VOTER if as_voter else ConfChangeType.ADD_LEARNER
            change = ConfChange(type=kind, node_id=node.id)
        elif option == "promote":
            target = self._rng.choice(sorted(conf.learners))
            change = ConfChange(type=ConfChangeType.ADD_VOTER, node_id=target)
        elif option == "shrink":
            target = self._shrink.choice(sorted(conf.voters - {leader.id}))
            change = ConfChange(type=ConfChangeType.REMOVE_NODE, node_id=target)
        else:
            target = self._rng.choice(sorted(members))
            change = ConfChange(type=ConfChangeType.REMOVE_NODE, node_id=target)
        try:
            leader.raft.propose_conf_change(change)
        except ProposalDroppedError:
            if option in ("add", "learner"):
                self.retire(node.id)  # never became a member: stop it
            return ""
        sim.after_io(leader)
        if change.type is ConfChangeType.REMOVE_NODE and change.node_id == leader.id:
            sim.count("remove_leader")
        if option == "shrink":
            sim.count("shrink_voters")
        return f"{change.type.name} {change.node_id} via {leader.id}"

    def _steer(self, voters: frozenset[str], learners: frozenset[str], leader: str) -> str:
        """BUGGIFY: the change that leads to one voter (the leader) with a learner, or ""."""
        if not self._shrink_odds or self._shrink.random() >= self._shrink_odds:
            return ""
        if len(voters) >= 2 and leader in voters:
            return "shrink"
        if len(voters) == 1:
            return "hold" if learners else "learner"  # and there it stays
        return ""

    def on_applied(self, applied: Applied) -> None:
        """Shut a removed member down once every remaining voter has applied its removal.

        This is the operator's rule (docs/guide/cluster.md): with configurations taking
        effect on apply, destroying a removed member before the others learned what it
        knows committed can leave them with a configuration naming members that are gone,
        and no quorum to learn anything more (seeds 2009859 and 2009168 of the kv model).
        """
        sim = self._sim
        change = applied.conf_change
        if change is not None and change.type is ConfChangeType.REMOVE_NODE:
            target = change.node_id
            if target not in sim.retired and target in sim.nodes and target not in self._removals:
                voters = sim.nodes[applied.node_id].conf_state.voters
                self._removals[target] = (applied.index, voters)
        for target, (index, voters) in list(self._removals.items()):
            # Nor may it take with it the only knowledge that later entries committed (a
            # removed leader that went on appending, or a member told of a commit the
            # others have not heard of): it leaves once they applied all it knows.
            known = max(index, _known_commit(sim.nodes[target]))
            remaining = [sim.nodes[v] for v in voters if v not in sim.retired and v in sim.nodes]
            if all(node.applied >= known for node in remaining):
                del self._removals[target]
                sim.schedule(self._rng.randint(0, 200), EV_RETIRE, target)

    def retire(self, node_id: str) -> None:
        sim = self._sim
        if node_id in sim.retired:
            return
        sim.retired.add(node_id)
        node = sim.nodes[node_id]
        if node.alive:
            sim.crash_node(node)
        sim.trace(f"{sim.now_ms} retire {node_id}")


def _known_commit(node: SimNode) -> int:
    """The highest index ``node`` knows committed: its core's, or its durable hard state's."""
    raft = node.raft
    if raft is not None:
        return raft.status.commit
    return node.storage.initial_state()[0].commit
