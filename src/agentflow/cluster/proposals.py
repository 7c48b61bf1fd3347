"""Proposals waiting for their entries: one future per log index, resolved when it applies.

A proposal resolves with its entry's result when the entry applies with the term it was
proposed in; if another entry took its index (a leader change) or a snapshot covered it, it
resolves with an :class:`UnavailableError` and the client's retry (with its idempotency key)
decides. Futures are resolved with a result, never an exception: the proposer raises it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Protocol

from agentflow.errors import AgentFlowError, UnavailableError
from agentflow.histograms import Histogram
from agentflow.raft import Entry

__all__ = ["Proposals", "Waiter", "committed"]


async def committed(
    future: asyncio.Future[Any],
    *,
    timeout_s: float,
    observe: Histogram,
    late: str,
    hint: dict[str, Any],
) -> Any:
    """The result ``future`` resolves with once its command is committed and applied (raised
    when the state machine refused the command), or :class:`UnavailableError` with ``late``
    (and the leader ``hint``) when ``timeout_s`` passes first; the wait goes into ``observe``.
    """
    started = time.perf_counter()
    try:
        result = await asyncio.wait_for(future, timeout_s)
    except TimeoutError:
        raise UnavailableError(late, **hint) from None
    observe.observe(time.perf_counter() - started)
    if isinstance(result, AgentFlowError):
        raise result
    return result


class Waiter(Protocol):
    """Whoever waits for a result (an ``asyncio.Future`` in the master)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...

    def set_exception(self, exception: BaseException, /) -> None: ...


@dataclass(slots=True)
class _Waiting:
    term: int
    future: Waiter


class Proposals:
    """The futures of entries appended by this node, by log index."""

    def __init__(self) -> None:
        self._waiting: dict[int, _Waiting] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def wait(self, index: int, term: int, future: Waiter) -> None:
        """Resolve ``future`` when the entry at ``index`` applies (see :meth:`applied`)."""
        self._waiting[index] = _Waiting(term, future)

    def applied(self, entry: Entry, result: Any) -> None:
        """``entry`` applied with ``result``: resolve whoever proposed its index."""
        waiting = self._waiting.pop(entry.index, None)
        if waiting is not None and not waiting.future.done():
            if waiting.term == entry.term:
                waiting.future.set_result(result)
            else:
                waiting.future.set_result(
                    UnavailableError("the command lost its place to a leader change; retry")
                )

    def superseded(self, index: int) -> None:
        """A snapshot at ``index`` was installed: entries up to it will never apply here."""
        for i in [i for i in self._waiting if i <= index]:
            waiting = self._waiting.pop(i)
            if not waiting.future.done():
                waiting.future.set_result(UnavailableError("superseded by a snapshot; retry"))
