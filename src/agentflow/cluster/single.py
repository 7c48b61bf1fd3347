"""The single-node command log: a Raft cluster of one, without the network.

Proposals arriving while a flush runs wait for the next one, so one fsync covers all of them
(group commit). After the batch is durable it is applied in order, each proposal's future gets
its result, and subscribers get the batch's events.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from agentflow.cluster.logstore import LogStore
from agentflow.cluster.seam import EventSink
from agentflow.cluster.statestore import StateStore
from agentflow.errors import AgentFlowError, OverloadedError, UnavailableError
from agentflow.state import Command, StateMachine, decode_command, encode_command

__all__ = ["SingleNodeLog"]

log = logging.getLogger(__name__)

_TERM = 1  # a cluster of one never changes term


class SingleNodeLog:
    """Implements :class:`agentflow.cluster.seam.CommandLog` for one master."""

    def __init__(
        self,
        data_dir: Path,
        machine: StateMachine,
        *,
        max_batch: int = 4096,
        max_pending: int = 100_000,
        image_every: int = 20_000,
    ) -> None:
        self._machine = machine
        self._logstore = LogStore(data_dir / "raft.db")
        self._statestore = StateStore(data_dir / "state.db")
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._image_every = image_every
        self._pending: list[tuple[Command, asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._sinks: list[EventSink] = []
        self._last_index = 0
        self._image_index = 0
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def machine(self) -> StateMachine:
        return self._machine

    @property
    def is_leader(self) -> bool:
        return True

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    async def start(self) -> None:
        """Open storage, load the state image, replay the log after it, start flushing."""
        await self._logstore.open()
        await self._statestore.open()
        image = await self._statestore.load()
        if image is not None:
            self._machine.restore(image[1])
            self._image_index = image[0]
        replayed = await self._logstore.read(self._machine.applied_index + 1)
        for index, _term, data in replayed:
            self._machine.apply(index, decode_command(data))
        self._machine.drain_events()
        self._last_index = max(self._machine.applied_index, await self._logstore.last_index())
        log.info(
            "log open: image at %d, replayed %d entries, last index %d",
            self._image_index,
            len(replayed),
            self._last_index,
        )
        self._runner = asyncio.create_task(self._flush_loop(), name="group-commit")

    async def propose(self, command: Command) -> Any:
        if self._closed:
            raise UnavailableError("master is shutting down")
        if len(self._pending) >= self._max_pending:
            raise OverloadedError("too many commands waiting for the log; retry shortly")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((command, future))
        self._wake.set()
        result = await future
        if isinstance(result, AgentFlowError):
            raise result
        return result

    async def read_barrier(self) -> None:
        """A single node's applied state is always current."""

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._flush(batch)
            if self._closed:
                return

    async def _flush(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        first = self._last_index + 1
        rows = [(first + i, _TERM, encode_command(cmd)) for i, (cmd, _f) in enumerate(batch)]
        try:
            await self._logstore.append(rows)
        except Exception as exc:  # the disk failed: nothing in this batch was acknowledged
            log.exception("log append failed")
            for _cmd, future in batch:
                if not future.done():
                    future.set_exception(UnavailableError(f"log write failed: {exc}"))
            return
        self._last_index = first + len(batch) - 1
        for i, (cmd, future) in enumerate(batch):
            result = self._machine.apply(first + i, cmd)
            if not future.done():
                future.set_result(result)
        events = self._machine.drain_events()
        for sink in self._sinks:
            sink(events)
        if self._machine.applied_index - self._image_index >= self._image_every:
            await self._save_image()

    async def _save_image(self) -> None:
        index = self._machine.applied_index
        await self._statestore.save(index, self._machine.snapshot())
        await self._logstore.compact(index)
        self._image_index = index

    async def close(self) -> None:
        """Flush what is pending, write a final image, close storage."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._runner is not None:
            await self._runner
        if self._machine.applied_index > self._image_index:
            await self._save_image()
        await self._logstore.close()
        await self._statestore.close()
