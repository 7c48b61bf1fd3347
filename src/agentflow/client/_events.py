"""Waiting for many tasks over one event socket (``WS /api/v1/events``): the I/O-free part.

A client keeps one socket subscribed to the ends of the tasks its waits name (``ends_only``,
task events only). :class:`EndWatch` is its bookkeeping, shared by the sync and async sockets
(:mod:`agentflow.client._eventsocket`): which tasks are watched and by whom, which of them the
current socket has confirmed, the applied index reached (the resume point), and what each
frame means. Nothing here does I/O.

After a drop the socket resumes from that index, on any master, naming the confirmed tasks; the
others are added again with their current state. A master that no longer holds the events
after that index answers ``events-lost``; then every task is added again with its current
state, which is the same as having seen every event.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from agentflow.client._core import TERMINAL, TaskInfo, unreachable
from agentflow.errors import (
    AgentFlowError,
    AuthError,
    ClientError,
    ForbiddenError,
    OverloadedError,
    error_from_problem,
)

__all__ = [
    "ADD_MAX",
    "EVENT_KINDS",
    "WATCH_MAX",
    "EndWatch",
    "Ended",
    "EventStream",
    "Sink",
    "refused",
    "task_info",
]

EVENT_KINDS = ("task", "workflow", "worker", "lock", "message", "entry")
ADD_MAX = 10_000  # task ids in one add frame (the master's bound)
WATCH_MAX = 50_000  # tasks one wait watches at once; more are added as these end


def task_info(event: Mapping[str, Any]) -> TaskInfo:
    """What an end event says of its task: id, status, exit code, reason, and in ``raw`` the
    result (``get`` has the full record)."""
    raw = dict(event)
    raw["id"] = event["task_id"]
    return TaskInfo(
        id=raw["id"],
        status=raw["status"],
        exit_code=raw.get("exit_code"),
        reason=raw.get("reason"),
        raw=raw,
    )


@dataclass(frozen=True, slots=True)
class Ended:
    """What a watched task's sink receives: its end, or ``info`` None when the master does not
    know the task (the waiter asks over HTTP), or the ``error`` that ends every wait."""

    task_id: str
    info: TaskInfo | None = None
    error: AgentFlowError | None = None


Sink = Callable[[Ended], None]


class EventStream:
    """What :meth:`Client.events` reads: the subscription to send on each (re)connection, and
    what each frame holds. The first connection asks for the held events (or those after
    ``from_index``); a reconnection, for those after the last index received."""

    options: ClassVar[dict[str, Any]] = {"open_timeout": 5.0, "max_size": 16 << 20}

    def __init__(
        self,
        *,
        kinds: Iterable[str] | None = None,
        task_ids: Iterable[str] | None = None,
        workflow_id: str | None = None,
        group: str | None = None,
        from_index: int | None = None,
        current: bool = False,
        follow: bool = True,
    ) -> None:
        frame: dict[str, Any] = {
            "task_ids": list(task_ids) if task_ids is not None else None,
            "workflow_id": workflow_id,
            "group": group,
            "kinds": list(kinds) if kinds is not None else None,
        }
        self._filters = {k: v for k, v in frame.items() if v is not None}
        self.cursor = from_index
        self.current = current
        self.follow = follow
        self.finished = False
        self._last: BaseException | None = None

    def first_frame(self) -> str:
        """The subscription: first the held events (``current``: the current state), then
        after a drop those after the last index received."""
        start: dict[str, Any]
        if self.cursor is not None:
            start = {"from_index": self.cursor}
        else:
            start = {"current": True} if self.current else {"replay": True}
        return json.dumps(self._filters | start)

    def take(self, raw: str | bytes) -> list[dict[str, Any]]:
        """The events of one frame; an error frame raised as its typed error."""
        frame = json.loads(raw)
        if "error" in frame:
            problem = frame["error"]
            error = error_from_problem(int(problem.get("status", 400)), problem)
            if isinstance(error, ClientError) and not isinstance(error, OverloadedError):
                raise error  # events lost, a refused subscription: no reconnect mends it
            raise ConnectionError(error.detail)
        events: list[dict[str, Any]] = frame.get("events", [])
        if "index" in frame:
            self.cursor = frame["index"]
        if frame.get("subscribed") and not self.follow:
            self.finished = True
        return events

    def failed(self, exc: BaseException) -> None:
        """The connection ended with ``exc``: raised again unless a reconnect may mend it."""
        if isinstance(exc, AgentFlowError) or refused(exc):
            raise exc
        self._last = exc

    def unreachable(self, urls: list[str]) -> AgentFlowError:
        return unreachable(urls, self._last if isinstance(self._last, Exception) else None)


def refused(exc: BaseException) -> AgentFlowError | None:
    """The error a refused socket stands for (its token may not), else None."""
    if isinstance(exc, AuthError | ForbiddenError):
        return exc
    status = getattr(getattr(exc, "response", None), "status_code", None)
    code = getattr(getattr(exc, "rcvd", None), "code", None)
    if status in (401, 403) or code in (4401, 4403):
        return ForbiddenError(f"the event socket was refused: {exc}")
    return None


class EndWatch:
    """The tasks watched over one event socket, whoever waits on them.

    The socket calls :meth:`opened` when connected (and sends the frames it returns),
    :meth:`take` with each frame, :meth:`dropped` when the connection ends. Waiters call
    :meth:`watch` (and send what it returns if the socket is up) and :meth:`unwatch`.
    """

    def __init__(self) -> None:
        self.cursor: int | None = None  # every end up to this applied index has arrived
        self.sinks: dict[str, list[Sink]] = {}
        self.confirmed: set[str] = set()  # the current socket's subscription holds these
        self.connected = False
        self._refs = itertools.count(1)
        self._adding: dict[int, list[str]] = {}  # add frames not yet answered

    def watch(self, task_ids: Iterable[str], sink: Sink) -> list[str]:
        """``sink`` hears of each task's end; the tasks no one watched before (to add)."""
        new: list[str] = []
        for task_id in task_ids:
            sinks = self.sinks.setdefault(task_id, [])
            if not sinks:
                new.append(task_id)
            sinks.append(sink)
        return new

    def add_frames(self, task_ids: list[str]) -> list[str]:
        """The frames that add ``task_ids`` now (none while the socket is down: then
        :meth:`opened` adds them)."""
        live = [t for t in task_ids if t in self.sinks and t not in self.confirmed]
        return self._adds(live) if self.connected else []

    def unwatch(self, task_ids: Iterable[str], sink: Sink) -> list[str]:
        """``sink`` no longer waits on ``task_ids``; the frames that tell the master of the
        tasks no one watches any more (none while the socket is down)."""
        gone: list[str] = []
        for task_id in task_ids:
            sinks = self.sinks.get(task_id)
            if sinks is not None and sink in sinks:
                sinks.remove(sink)
                if not sinks:
                    del self.sinks[task_id]
                    self.confirmed.discard(task_id)
                    gone.append(task_id)
        if not self.connected:
            return []
        return [json.dumps({"remove": gone[i : i + ADD_MAX]}) for i in range(0, len(gone), ADD_MAX)]

    def opened(self) -> list[str]:
        """The frames that (re)subscribe a new connection: resume from the index reached with
        the confirmed tasks, and add the others with their current state."""
        self.connected = True
        self._adding.clear()
        if self.cursor is None:
            self.confirmed.clear()
        first: dict[str, Any] = {"kinds": ["task"], "ends_only": True}
        first["task_ids"] = sorted(self.confirmed & self.sinks.keys())
        if self.cursor is not None:
            first["from_index"] = self.cursor
        frames = [json.dumps(first)]
        return frames + self._adds([t for t in self.sinks if t not in self.confirmed])

    def dropped(self) -> None:
        self.connected = False

    def lost(self) -> None:
        """The master no longer holds the events after the cursor: start again from the
        current state of every watched task."""
        self.cursor = None
        self.confirmed.clear()

    def _adds(self, task_ids: list[str]) -> list[str]:
        frames = []
        for start in range(0, len(task_ids), ADD_MAX):
            chunk = task_ids[start : start + ADD_MAX]
            ref = next(self._refs)
            self._adding[ref] = chunk
            frames.append(json.dumps({"add": chunk, "ref": ref}))
        return frames

    def take(self, raw: str | bytes) -> list[tuple[Sink, Ended]]:
        """Read one frame; what each sink is to hear. An error frame of the socket's end is
        raised as its typed error (``events-lost``: see :meth:`lost`)."""
        frame = json.loads(raw)
        told: list[tuple[Sink, Ended]] = []
        if "error" in frame:
            problem = frame["error"]
            error = error_from_problem(int(problem.get("status", 400)), problem)
            if frame.get("ref") is None:
                raise error
            for task_id in self._adding.pop(frame["ref"], ()):  # an add refused: its waits end
                told += self._tell(task_id, Ended(task_id, error=error))
            return told
        for event in frame.get("events", ()):
            if event.get("kind") == "task" and event.get("status") in TERMINAL:
                task_id = event["task_id"]
                # Without its outcome (retried or evicted since), the waiter asks over HTTP.
                info = task_info(event) if "result_format" in event else None
                told += self._tell(task_id, Ended(task_id, info=info))
        if frame.get("subscribed"):  # the tasks the first frame named
            adding = {t for chunk in self._adding.values() for t in chunk}
            self.confirmed.update(t for t in self.sinks if t not in adding)
        if "ref" in frame:
            self.confirmed.update(t for t in self._adding.pop(frame["ref"], ()) if t in self.sinks)
        for task_id in frame.get("unknown", ()):
            told += [(sink, Ended(task_id)) for sink in self.sinks.get(task_id, ())]
        if "index" in frame:
            self.cursor = frame["index"]
        return told

    def _tell(self, task_id: str, ended: Ended) -> list[tuple[Sink, Ended]]:
        sinks = self.sinks.pop(task_id, [])
        self.confirmed.discard(task_id)
        return [(sink, ended) for sink in sinks]

    def fail_all(self, error: AgentFlowError) -> list[tuple[Sink, Ended]]:
        """The socket cannot be had again: every wait ends with ``error``."""
        told = [(s, Ended(t, error=error)) for t, sinks in self.sinks.items() for s in sinks]
        self.sinks.clear()
        self.confirmed.clear()
        return told
