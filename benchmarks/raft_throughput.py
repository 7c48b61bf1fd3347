"""Raft core throughput: commands committed per second of CPU, 3 nodes, one process, no I/O.

Three `RaftNode`s over in-memory storage; messages go through a FIFO queue with no delay and
no loss; the shell persists, sends, applies and advances as the Ready contract says. The
leader gets proposals in batches of 64 and the batch is pumped until committed and applied
everywhere. The figure is commands / `time.process_time()` seconds, so it measures the core
(plus the thinnest possible shell), not the machine's idle time.

Run: `PYTHONPATH=src python benchmarks/raft_throughput.py [--batches N]`
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque

from agentflow.raft import Config, MemoryStorage, Message, RaftNode, StateRole, bootstrap

BATCH = 64
TARGET_PER_S = 50_000


class Cluster:
    def __init__(self, size: int = 3, seed: int = 1) -> None:
        rng = random.Random(seed)
        voters = [str(i) for i in range(1, size + 1)]
        self.storages = {node_id: MemoryStorage() for node_id in voters}
        for storage in self.storages.values():
            bootstrap(storage, voters)
        self.nodes = {
            node_id: RaftNode(Config(id=node_id), storage, random.Random(rng.getrandbits(64)))
            for node_id, storage in sorted(self.storages.items())
        }
        self.applied = dict.fromkeys(self.nodes, 0)
        self.queue: deque[Message] = deque()
        # The first Ready hands out the bootstrap entries; a node campaigns only once they are
        # applied. They only re-add the voters the node already knows, and no other conf
        # change is proposed here, so this shell skips apply_conf_change.
        for node_id in self.nodes:
            self.process(node_id)

    def process(self, node_id: str) -> None:
        node = self.nodes[node_id]
        storage = self.storages[node_id]
        while node.has_ready():
            ready = node.ready()
            if ready.entries:
                storage.append(ready.entries)
            if ready.hard_state is not None:
                storage.set_hard_state(ready.hard_state)
            self.queue.extend(ready.messages)
            if ready.committed_entries:
                self.applied[node_id] = ready.committed_entries[-1].index
            node.advance(ready)

    def pump(self) -> None:
        queue = self.queue
        nodes = self.nodes
        while queue:
            message = queue.popleft()
            nodes[message.to].step(message)
            self.process(message.to)

    def elect(self, node_id: str) -> RaftNode:
        leader = self.nodes[node_id]
        leader.campaign()
        self.process(node_id)
        self.pump()
        assert leader.role is StateRole.LEADER
        return leader


def run(batches: int) -> tuple[int, float]:
    cluster = Cluster()
    leader = cluster.elect("1")
    payload = [f"set key{i % 97} value{i}".encode() for i in range(BATCH)]
    started = time.process_time()
    last = 0
    for _ in range(batches):
        for data in payload:
            last = leader.propose(data)
        cluster.process("1")
        cluster.pump()
    elapsed = time.process_time() - started
    assert all(applied >= last for applied in cluster.applied.values()), cluster.applied
    return batches * BATCH, elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=2000)
    args = parser.parse_args()
    committed, cpu_s = run(args.batches)
    rate = committed / cpu_s
    verdict = "meets" if rate >= TARGET_PER_S else "below"
    print(
        f"raft_throughput: {committed} commands committed on 3 nodes in {cpu_s:.3f} s CPU "
        f"= {rate:,.0f} commands/s ({verdict} the {TARGET_PER_S:,}/s target; batch {BATCH})"
    )


if __name__ == "__main__":
    main()
