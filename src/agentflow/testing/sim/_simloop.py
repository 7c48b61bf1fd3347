"""Coroutines stepped by hand on the virtual clock: the simulator's stand-in for asyncio.

The command log's methods are coroutines (``await log.propose(command)``), as the master's
loops call them. The simulator has no event loop and must not have one (nothing may decide
the order of things but the seed), so it steps those coroutines itself: a :class:`SimFuture`
is what they await — a :class:`agentflow.cluster.proposals.Waiter` that the node's driver
resolves — and a :class:`SimLoop` resumes, in the order their futures resolved, the tasks
whose futures are done. The loop runs only when the simulation calls :meth:`SimLoop.run`
(after a node's I/O, or when an actor starts a task), never from inside a Ready, and never
re-enters itself: a task resolved while another one runs is resumed by the same pass.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["SimFuture", "SimLoop", "SimTask"]


class SimFuture:
    """A result to come, awaited by one task; resolved at most once."""

    __slots__ = ("_done", "_exception", "_loop", "_result", "_task")

    def __init__(self, loop: SimLoop) -> None:
        self._loop = loop
        self._done = False
        self._result: Any = None
        self._exception: BaseException | None = None
        self._task: SimTask | None = None  # the task suspended on it

    def done(self) -> bool:
        return self._done

    def set_result(self, result: Any, /) -> None:
        self._resolve(result, None)

    def set_exception(self, exception: BaseException, /) -> None:
        self._resolve(None, exception)

    def _resolve(self, result: Any, exception: BaseException | None) -> None:
        if self._done:
            return  # a waiter may be resolved twice (refused, then answered): the first wins
        self._done, self._result, self._exception = True, result, exception
        if self._task is not None:
            self._loop.wake(self._task)

    def result(self) -> Any:
        assert self._done, "the future is not resolved"
        if self._exception is not None:
            raise self._exception
        return self._result

    def suspend(self, task: SimTask) -> None:
        """``task`` awaits this future: resume it once resolved (at once if it is)."""
        self._task = task
        if self._done:
            self._loop.wake(task)

    def __await__(self) -> Generator[SimFuture, None, Any]:
        if not self._done:
            yield self
        return self.result()


class SimTask:
    """One coroutine, stepped by its loop each time the future it awaits resolves."""

    __slots__ = ("_coro", "_stepping", "done", "name")

    def __init__(self, coro: Coroutine[SimFuture, None, None], name: str) -> None:
        self._coro = coro
        self._stepping = False
        self.name = name
        self.done = False

    def step(self) -> None:
        if self.done:
            return  # cancelled while it was waiting to be resumed
        self._stepping = True
        try:
            awaited = self._coro.send(None)
        except StopIteration:
            self.done = True
            return
        finally:
            self._stepping = False
        self._suspend(awaited)

    def _suspend(self, awaited: SimFuture) -> None:
        if self.done:  # cancelled by what it did (its node crashed in its own I/O)
            self._coro.close()
        else:
            awaited.suspend(self)

    def cancel(self) -> None:
        """End it where it waits (its node crashed, its caller gave up): it never resumes."""
        if self.done:
            return
        self.done = True
        if not self._stepping:  # else `step` closes it once it is suspended
            self._coro.close()


class SimLoop:
    """The tasks ready to resume, run in the order they became ready."""

    def __init__(self) -> None:
        self._ready: deque[SimTask] = deque()
        self._running = False

    def future(self) -> SimFuture:
        return SimFuture(self)

    def start(self, coro: Coroutine[SimFuture, None, None], name: str = "") -> SimTask:
        """A task for ``coro``, ready: it runs up to its first wait at the next :meth:`run`
        (the caller registers it first, so that whatever that run causes can cancel it)."""
        task = SimTask(coro, name)
        self.wake(task)
        return task

    def wake(self, task: SimTask) -> None:
        self._ready.append(task)

    def run(self) -> None:
        """Resume every ready task, and those they make ready, until none is left."""
        if self._running:
            return  # the pass below this call picks them up
        self._running = True
        try:
            while self._ready:
                self._ready.popleft().step()
        finally:
            self._running = False
