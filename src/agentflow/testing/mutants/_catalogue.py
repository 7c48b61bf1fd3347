"""The catalogue of deliberate bugs: each one exact snippet of our source and its mutation.

Each mutant names the file (relative to the `agentflow` package), the exact old snippet
(which must occur exactly once, or the runner refuses the mutant), the new snippet, and the
simulation model that can see it: "raft" runs the default Raft + key-value simulation;
"system" needs the simulation of the real state machine (`SimConfig(model="system")`), and is
reported pending where that model does not exist yet.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CATALOGUE", "NO_MUTANT", "Mutant", "by_name"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Mutant:
    name: str
    file: str  # relative to src/agentflow, e.g. "raft/_log.py"
    old: str
    new: str
    why: str  # the rule it breaks
    model: str = "raft"

    @property
    def module(self) -> str:
        return "agentflow." + self.file.removesuffix(".py").replace("/", ".")


CATALOGUE: tuple[Mutant, ...] = (
    Mutant(
        name="commit-rule",
        file="raft/_log.py",
        old="        if index > self.committed and self.zero_term_on_error(index) == term:\n",
        new="        if index > self.committed and self.zero_term_on_error(index) > 0:\n",
        why="§5.4.2: a leader counts replicas for entries of earlier terms (Figure 8)",
    ),
    Mutant(
        name="vote-without-up-to-date-check",
        file="raft/_raft.py",
        old="        if can_vote and self.log.is_up_to_date(m.index, m.log_term):\n",
        new="        if can_vote:\n",
        why="§5.4.1: a vote (or pre-vote) granted to a candidate whose log is behind",
    ),
    Mutant(
        name="skip-conflict-truncation",
        file="raft/_log.py",
        old=(
            "            if entry.index > last or not self.match_term(entry.index, entry.term):\n"
        ),
        new="            if entry.index > last:\n",
        why="§5.3: a follower keeps its conflicting entries instead of truncating them",
    ),
    Mutant(
        name="heartbeat-commit-past-match",
        file="raft/_leader.py",
        old="            commit = min(pr.match, committed)\n",
        new="            commit = committed\n",
        why=(
            "§5.3: a heartbeat tells a follower to commit past what it is known to hold, "
            "where its log may be shorter or still diverge"
        ),
    ),
    Mutant(
        name="commit-before-own-persist",
        file="raft/_leader.py",
        old="    r.needs_broadcast = True\n    return last\n",
        new=(
            "    own = r.tracker.progress.get(r.id)\n"
            "    if own is not None and own.maybe_update(last):\n"
            "        maybe_commit(r)\n"
            "    r.needs_broadcast = True\n"
            "    return last\n"
        ),
        why=(
            "apply before persist (thesis §10.2.1): the leader counts its own copy before it "
            "is on disk, so it commits and applies what a majority may not durably hold "
            "(visible only where the leader alone is a majority: one voter, with learners)"
        ),
    ),
    Mutant(
        name="ack-before-persist",
        file="raft/_node.py",
        old=(
            "    {MessageType.APPEND, MessageType.HEARTBEAT, MessageType.SNAPSHOT, "
            "MessageType.TIMEOUT_NOW}\n"
        ),
        new=(
            "    {MessageType.APPEND, MessageType.APPEND_RESP, MessageType.HEARTBEAT, "
            "MessageType.SNAPSHOT, MessageType.TIMEOUT_NOW}\n"
        ),
        why=(
            "persist before send (Ready contract): a follower acknowledges entries before "
            "they are on its disk, so a leader may count a copy a crash then loses"
        ),
    ),
    Mutant(
        name="read-index-without-heartbeat",
        file="raft/_leader.py",
        old=(
            "    if r.read_only.add_request(r.log.committed, context, requester):\n"
            "        r.read_only.recv_ack(r.id, context)\n"
            "        broadcast_heartbeat(r, context)\n"
        ),
        new="    _respond_read(r, r.log.committed, context, requester)\n",
        why="thesis §6.4: a leader answers a ReadIndex without confirming it still leads",
    ),
    Mutant(
        name="read-index-before-own-term-commit",
        file="raft/_leader.py",
        old="    if not r.committed_entry_in_current_term():\n        # Our commit index may lag",
        new="    if False:\n        # Our commit index may lag",
        why=(
            "thesis §6.4: a new leader answers a ReadIndex with a commit index that may lag "
            "its predecessor's"
        ),
    ),
    Mutant(
        name="pre-vote-grant-records-vote",
        file="raft/_raft.py",
        old=(
            "            if m.type is MessageType.VOTE:\n"
            "                self.election_elapsed = 0\n"
        ),
        new="            if True:\n                self.election_elapsed = 0\n",
        why=(
            "thesis §9.6: a pre-vote grant is recorded as a real vote, which can change the "
            "vote already cast in the current term"
        ),
    ),
    Mutant(
        name="task-stale-token-accepted",
        file="state/tasks.py",
        old="    if task is None or task.fencing_token != token or not task.attempts:\n",
        new="    if task is None or not task.attempts:\n",
        why="fencing: a report from a superseded attempt (stale token) is accepted",
        model="system",
    ),
    Mutant(
        name="task-token-not-rising",
        file="state/tasks.py",
        old="        task.fencing_token = index\n",
        new="        task.fencing_token = task.fencing_token or index\n",
        why="fencing: a retried task keeps its first attempt's token, which never rises",
        model="system",
    ),
    Mutant(
        name="lock-limit-off-by-one",
        file="state/locks.py",
        old="    return LockMode.SHARED not in modes and len(lock.holders) < lock.limit\n",
        new="    return LockMode.SHARED not in modes and len(lock.holders) <= lock.limit\n",
        why="locks: an exclusive lock admits one holder too many (two exclusive holders)",
        model="system",
    ),
    Mutant(
        name="lock-renew-after-expiry",
        file="state/locks.py",
        old=(
            "        if now_ms >= grant.expiry_ms:\n"
            '            raise StaleTokenError(f"grant {token} of lock {name} has expired", '
            "lock=name)\n"
        ),
        new="",
        why="lock expiry: a grant whose expiry passed is renewed instead of refused",
        model="system",
    ),
)


# The unmutated code, run through the same path: every seed of the budget must pass.
NO_MUTANT = Mutant(name="none", file="", old="", new="", why="the code as written")


def by_name(name: str) -> Mutant:
    for mutant in (NO_MUTANT, *CATALOGUE):
        if mutant.name == name:
            return mutant
    raise KeyError(name)
