"""Proposals waiting for the writer: taken in batches, one transaction each (group commit).

A proposal arriving while a batch is being committed waits for the next one, so under load
one transaction carries many commands. A proposer that gave up (its future cancelled by a
timeout) before its batch was taken is dropped: it never reaches the log.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any

from agentflow.errors import AgentFlowError, OverloadedError
from agentflow.state import Command

__all__ = ["Proposal", "Proposals", "fail_batch"]


@dataclass(slots=True)
class Proposal:
    command: Command
    future: asyncio.Future[Any]

    def settle(self, result: Any) -> None:
        if not self.future.done():  # the proposer may have given up meanwhile
            self.future.set_result(result)

    def fail(self, error: AgentFlowError) -> None:
        if not self.future.done():
            self.future.set_exception(error)


class Proposals:
    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._queue: deque[Proposal] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, command: Command) -> asyncio.Future[Any]:
        if len(self._queue) >= self._limit:
            raise OverloadedError("too many commands waiting for the writer; retry shortly")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(Proposal(command, future))
        return future

    def take(self, most: int) -> list[Proposal]:
        """Up to ``most`` waiting proposals, oldest first (those given up on are dropped)."""
        batch: list[Proposal] = []
        queue = self._queue
        while queue and len(batch) < most:
            proposal = queue.popleft()
            if not proposal.future.done():
                batch.append(proposal)
        return batch

    def fail_all(self, error: AgentFlowError) -> None:
        while self._queue:
            self._queue.popleft().fail(error)


def fail_batch(batch: list[Proposal], error: AgentFlowError) -> None:
    for proposal in batch:
        proposal.fail(error)
