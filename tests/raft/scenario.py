"""Data-driven scenarios: a command, ``----``, and the output the core must produce.

A file in testdata/ holds cases separated by blank lines; ``#`` lines before a case are
comments. Commands (ids are node ids, "1", "2", ...)::

    add-nodes N [voters=(1,2,3)] [learners=(4)] [prevote=false] [checkquorum=false]
              (voters alone: bootstrapped into the log; nothing: a joiner, empty storage)
              [election=10] [inflight=256] [maxsize=1048576]
    campaign ID | propose ID DATA | propose-conf-change ID add-voter|add-learner|remove NODE
    deliver            handle readies and deliver messages until quiet, showing each
    deliver-round      handle readies, deliver only the messages in flight now
    stabilize          deliver, then print raft-state
    tick ID N | tick-election ID | tick-heartbeat ID
    partition 1 / 2 3 | isolate ID | heal | drop TYPE|none
    transfer FROM TO | compact ID INDEX | read-index ID CTX | restart ID
    status ID | log ID | raft-state
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from network import Network, render_entry

from agentflow.raft import (
    ConfChange,
    ConfChangeType,
    MessageType,
    ProposalDroppedError,
    StateRole,
)

_CONF = {
    "add-voter": ConfChangeType.ADD_VOTER,
    "add-learner": ConfChangeType.ADD_LEARNER,
    "remove": ConfChangeType.REMOVE_NODE,
}


@dataclass
class Case:
    comments: list[str]
    commands: list[str]
    expected: list[str]


def parse(text: str) -> list[Case]:
    cases: list[Case] = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.splitlines()
        comments = [line for line in lines if line.startswith("#")]
        body = [line for line in lines if not line.startswith("#")]
        if "----" not in body:
            raise ValueError(f"case without ----: {block!r}")
        cut = body.index("----")
        cases.append(Case(comments, body[:cut], body[cut + 1 :]))
    return cases


def render(cases: list[Case]) -> str:
    blocks = ["\n".join([*c.comments, *c.commands, "----", *c.expected]) for c in cases]
    return "\n\n".join(blocks) + "\n"


def _ids(arg: str) -> list[str]:
    inner = arg.split("=", 1)[1].strip("()")
    return [part for part in inner.split(",") if part]


@dataclass
class Runner:
    trace: list[str] = field(default_factory=list)
    net: Network = field(init=False)

    def __post_init__(self) -> None:
        self.net = Network(trace=self.trace)

    def run(self, command: str) -> list[str]:
        self.trace.clear()
        name, *args = command.split()
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        handler(*args)
        return list(self.trace)

    # -- commands --------------------------------------------------------------------------

    def cmd_add_nodes(self, count: str, *options: str) -> None:
        voters: list[str] = []
        learners: list[str] = []
        settings: dict[str, object] = {}
        keys = {"election": "election_tick", "inflight": "max_inflight_msgs"}
        keys |= {"maxsize": "max_size_per_msg"}
        for option in options:
            key, value = option.split("=", 1)
            if key == "voters":
                voters = _ids(option)
            elif key == "learners":
                learners = _ids(option)
            elif key == "prevote":
                settings["pre_vote"] = value == "true"
            elif key == "checkquorum":
                settings["check_quorum"] = value == "true"
            else:
                settings[keys[key]] = int(value)
        first = len(self.net.nodes) + 1
        for n in range(first, first + int(count)):
            # Founding voters are bootstrapped into the log, as a real cluster starts; with
            # learners the configuration sits beside the log (there is no other way to found
            # a cluster with learners); with neither the node joins from an empty storage.
            self.net.add_node(
                str(n),
                voters=voters,
                learners=learners,
                conf_in_log=bool(voters) and not learners,
                seed=n,
                **settings,
            )

    def cmd_campaign(self, node_id: str) -> None:
        self.net.nodes[node_id].campaign()
        self.net.process_all()

    def cmd_propose(self, node_id: str, data: str) -> None:
        try:
            index = self.net.nodes[node_id].propose(data.encode())
        except ProposalDroppedError as exc:
            self.trace.append(f"dropped: {exc}")
            return
        self.trace.append(f"index {index}")

    def cmd_propose_conf_change(self, node_id: str, kind: str, target: str) -> None:
        cc = ConfChange(type=_CONF[kind], node_id=target)
        try:
            index = self.net.nodes[node_id].propose_conf_change(cc)
        except ProposalDroppedError as exc:
            self.trace.append(f"dropped: {exc}")
            return
        self.trace.append(f"index {index}")

    def cmd_deliver(self) -> None:
        self.net.stabilize()

    def cmd_deliver_round(self) -> None:
        """Handle readies, then deliver only the messages in flight now: what they cause
        waits for the next round, so a test can cut a link between a request and its reply."""
        self.net.process_all()
        self.net.deliver_round()

    def cmd_stabilize(self) -> None:
        self.net.stabilize()
        self.cmd_raft_state()

    def cmd_tick(self, node_id: str, times: str) -> None:
        self.net.tick(node_id, int(times))

    def cmd_tick_election(self, node_id: str) -> None:
        """Tick until the node's role or term changes (at most two election timeouts)."""
        node = self.net.nodes[node_id]
        before = (node.role, node.term)
        for _ in range(2 * self.net.configs[node_id].election_tick):
            self.net.tick(node_id)
            if (node.role, node.term) != before:
                return

    def cmd_tick_heartbeat(self, node_id: str) -> None:
        self.net.tick(node_id, self.net.configs[node_id].heartbeat_tick)

    def cmd_partition(self, *args: str) -> None:
        groups: list[list[str]] = [[]]
        for arg in args:
            if arg == "/":
                groups.append([])
            else:
                groups[-1].append(arg)
        self.net.partition(*groups)

    def cmd_isolate(self, node_id: str) -> None:
        self.net.isolate(node_id)

    def cmd_heal(self) -> None:
        self.net.heal()

    def cmd_drop(self, kind: str) -> None:
        if kind == "none":
            self.net.drop_filter = None
        else:
            msg_type = MessageType(kind)
            self.net.drop_filter = lambda m: m.type is msg_type

    def cmd_transfer(self, from_id: str, to_id: str) -> None:
        self.net.nodes[from_id].transfer_leadership(to_id)
        self.net.process_all()

    def cmd_compact(self, node_id: str, index: str) -> None:
        self.net.compact(node_id, int(index))
        storage = self.net.storages[node_id]
        self.trace.append(f"{node_id}: log starts at {storage.first_index()}")

    def cmd_read_index(self, node_id: str, context: str) -> None:
        try:
            self.net.nodes[node_id].read_index(context.encode())
        except ProposalDroppedError as exc:
            self.trace.append(f"dropped: {exc}")
        self.net.process_all()

    def cmd_restart(self, node_id: str) -> None:
        self.net.restart(node_id)
        self.cmd_status(node_id)

    def cmd_status(self, node_id: str) -> None:
        s = self.net.nodes[node_id].status
        self.trace.append(
            f"{node_id}: {s.role.value} term={s.term} vote={s.vote or 'none'} "
            f"lead={s.leader_id or 'none'} commit={s.commit} applied={s.applied} "
            f"last={s.last_index}"
        )
        for peer, pr in sorted(s.progress.items()):
            learner = " learner" if pr.is_learner else ""
            self.trace.append(
                f"  {peer}: {pr.state.value} match={pr.match} next={pr.next}"
                f" inflight={pr.inflight}{learner}"
            )

    def cmd_log(self, node_id: str) -> None:
        storage = self.net.storages[node_id]
        first, last = storage.first_index(), storage.last_index()
        ents = storage.entries(first, last + 1) if last >= first else []
        text = ", ".join(render_entry(e) for e in ents) or "(empty)"
        self.trace.append(f"{node_id}: from {first}: {text}")

    def cmd_raft_state(self) -> None:
        for node_id, node in sorted(self.net.nodes.items()):
            s = node.status
            voter = "voter" if node_id in s.conf_state.voters else "non-voter"
            marker = "*" if s.role is StateRole.LEADER else " "
            self.trace.append(
                f"{marker}{node_id}: {s.role.value} term={s.term} commit={s.commit} {voter}"
            )


def run_file(path: Path) -> tuple[str, str]:
    """Run every case of ``path``; returns (expected text, actual text)."""
    text = path.read_text()
    cases = parse(text)
    runner = Runner()
    actual: list[Case] = []
    for case in cases:
        out: list[str] = []
        for command in case.commands:
            out.extend(runner.run(command))
        actual.append(Case(case.comments, case.commands, out or ["ok"]))
    return render(cases), render(actual)
