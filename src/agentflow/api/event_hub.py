"""The event stream's master side: applied events as stream events, a bounded ring of recent
ones, and the subscriptions of ``WS /api/v1/events``.

:class:`EventHub` is a sink of the command log (every master, leader or follower, feeds it the
events of the entries it applies, in log order), so each master serves the stream of its own
apply. It turns the state machine's events into :class:`StreamEvent` (task, workflow, worker,
lock and message kinds, each with the log index of its entry), keeps the latest ``ring_size``
of them for resuming, and hands each subscription the ones its :class:`EventFilter` takes, into
a bounded queue that the socket drains (:mod:`agentflow.api.event_routes`). It does no I/O.

Cursor rule: a subscription's ``cursor`` is an applied index through which every event that
its filter takes is queued. A client that saw a frame carrying index ``N`` resumes with
``from_index=N`` and gets exactly what followed, from any master, as long as a ring still
holds everything after ``N`` (:attr:`EventRing.floor`); otherwise it is told to re-read state.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from agentflow.errors import ClientError, EventsLostError, OverloadedError
from agentflow.state import StateMachine
from agentflow.state.events import (
    EntryRejected,
    Event,
    LockChanged,
    MessageDelivered,
    StateRestored,
    TaskChanged,
    TaskEvicted,
    TasksQueued,
    WorkerChanged,
    WorkflowChanged,
)
from agentflow.state.records import TERMINAL_STATUSES, TaskRecord
from agentflow.state.tasktable import row_head

__all__ = [
    "EVENT_KINDS",
    "WATCHED_TASKS_MAX",
    "Close",
    "EventFilter",
    "EventHub",
    "EventRing",
    "StreamEvent",
    "Subscription",
]

EVENT_KINDS = ("task", "workflow", "worker", "lock", "message", "entry")
WATCHED_TASKS_MAX = 100_000  # task ids one subscription names at once
_TASK_ENDS = frozenset(s.value for s in TERMINAL_STATUSES)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEvent:
    """One event of the stream. ``key`` names what it is about (a task, workflow or worker id,
    a lock name, an agent id); ``state`` what happened to it (a status, a worker state, a lock
    event); ``group`` and ``workflow_id`` are what filters match besides."""

    index: int
    kind: str
    key: str
    state: str = ""
    group: str | None = None
    workflow_id: str | None = None
    session: str | None = None  # a lock event's session
    number: int | None = None  # a lock grant's token, a message's inbox cursor
    reason: str | None = None  # why a log entry was rejected

    @property
    def ends(self) -> bool:
        """Whether it ends a task or a workflow."""
        if self.kind == "task":
            return self.state in _TASK_ENDS
        return self.kind == "workflow" and self.state != "running"

    def wire(self, machine: StateMachine) -> dict[str, Any]:
        """The event as a JSON object; a task's end carries its outcome while the task still
        holds it (a task retried or evicted since answers with its status alone)."""
        kind = self.kind
        if kind == "task":
            frame: dict[str, Any] = {
                "index": self.index,
                "kind": kind,
                "task_id": self.key,
                "status": self.state,
                "group": self.group,
                "workflow_id": self.workflow_id,
            }
            if self.state in _TASK_ENDS:
                task = machine.tasks.peek(self.key)
                if task is not None and task.status.value == self.state:
                    frame.update(outcome(task))
            return frame
        if kind == "workflow":
            return {
                "index": self.index,
                "kind": kind,
                "workflow_id": self.key,
                "status": self.state,
            }
        if kind == "worker":
            return {
                "index": self.index,
                "kind": kind,
                "worker_id": self.key,
                "state": self.state,
                "group": self.group,
            }
        if kind == "lock":
            return {
                "index": self.index,
                "kind": kind,
                "name": self.key,
                "event": self.state,
                "session": self.session,
                "token": self.number,
            }
        if kind == "entry":
            return {"index": self.index, "kind": kind, "state": self.state, "reason": self.reason}
        return {"index": self.index, "kind": kind, "agent_id": self.key, "cursor": self.number}


def outcome(task: TaskRecord) -> dict[str, Any]:
    """What a finished task's end event carries: enough for a wait to return and a future to
    give its value without another request."""
    return {
        "exit_code": task.exit_code,
        "reason": task.reason,
        "result": task.result,
        "result_format": task.spec.result_format,
    }


def task_event(index: int, task: TaskRecord) -> StreamEvent:
    """A task's current state, as an event at ``index`` (the state's applied index)."""
    return StreamEvent(
        index=index,
        kind="task",
        key=task.id,
        state=task.status.value,
        group=task.group,
        workflow_id=task.workflow_id,
    )


@dataclass(slots=True, kw_only=True)
class EventFilter:
    """Which events a subscription takes: each filter given must match, and an event without
    the field a filter names does not (``workflow_id`` takes the workflow's own events and its
    tasks'; ``group`` tasks' and workers'). ``task_ids`` may grow while subscribed; with
    ``ends_only``, only the events that end a task or a workflow pass, and a named task is
    dropped from ``task_ids`` once its end has passed."""

    kinds: frozenset[str] = frozenset(EVENT_KINDS)
    task_ids: set[str] | None = None
    workflow_id: str | None = None
    group: str | None = None
    ends_only: bool = False

    def takes(self, event: StreamEvent) -> bool:
        if event.kind not in self.kinds:
            return False
        if self.ends_only and event.kind in ("task", "workflow") and not event.ends:
            return False
        if self.task_ids is not None and (event.kind != "task" or event.key not in self.task_ids):
            return False
        if self.workflow_id is not None and event.workflow_id != self.workflow_id:
            return False
        return self.group is None or event.group == self.group

    def passed(self, event: StreamEvent) -> None:
        """``event`` was taken: with ``ends_only``, its task is no longer watched."""
        if self.ends_only and self.task_ids is not None and event.kind == "task":
            self.task_ids.discard(event.key)


Frame = dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """Queued after a last frame: the socket closes with ``code`` once that is sent."""

    code: int
    reason: str


@dataclass(eq=False, kw_only=True)
class Subscription:
    """One socket's share of the stream: its filter, and what waits to be sent, bounded.

    ``pending`` holds events, ready-made frames (answers to ``add``) and a :class:`Close`, in
    order. Past ``limit`` the subscription is ``overflowed`` (and ``broken`` is set): the socket
    is closed and the client resumes from the last index it received, ``sent_index``."""

    filter: EventFilter
    limit: int
    cursor: int = 0
    sent_index: int = -1
    pending: deque[StreamEvent | Frame | Close] = field(default_factory=deque)
    overflowed: bool = False
    lost_after: int | None = None  # the state jumped past this subscription's cursor
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    broken: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, events: Iterable[StreamEvent]) -> None:
        """Queue the events the filter takes; wake the socket if any was."""
        before = len(self.pending)
        for event in events:
            if self.filter.takes(event):
                self.filter.passed(event)
                self.pending.append(event)
        if len(self.pending) > self.limit:
            self.overflowed = True
            self.pending.clear()
            self.broken.set()
        if len(self.pending) != before:
            self.wake.set()

    def push(self, frame: Frame | Close) -> None:
        self.pending.append(frame)
        self.wake.set()


class EventRing:
    """The latest ``size`` stream events. ``floor``: every event of an entry after it is held
    (or none was made); a resume from below it cannot be served."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.events: deque[StreamEvent] = deque()
        self.floor = 0

    def add(self, event: StreamEvent) -> None:
        if len(self.events) >= self.size:
            self.floor = max(self.floor, self.events.popleft().index)
        self.events.append(event)

    def reset(self, index: int) -> None:
        """The state jumped to ``index`` (a snapshot installed, or the master started there):
        nothing before it can be replayed."""
        self.events.clear()
        self.floor = max(self.floor, index)

    def since(self, index: int) -> list[StreamEvent]:
        """Every held event of an entry after ``index``, oldest first."""
        if index < self.floor:
            raise EventsLostError(
                f"events after index {index} are no longer held (this master holds those "
                f"after {self.floor}): re-read the state, then subscribe from now",
                floor=self.floor,
            )
        found: list[StreamEvent] = []
        for event in reversed(self.events):
            if event.index <= index:
                break
            found.append(event)
        found.reverse()
        return found


class EventHub:
    """Every master's fan-out of applied events to the event sockets."""

    def __init__(
        self, machine: StateMachine, ring_size: int, queue_limit: int, max_subscriptions: int
    ) -> None:
        self.machine = machine
        self.ring = EventRing(ring_size)
        self.queue_limit = queue_limit
        self.max_subscriptions = max_subscriptions
        self.subscriptions: set[Subscription] = set()

    def started(self) -> None:
        """The log has recovered: what the state held before it cannot be replayed."""
        self.ring.reset(self.machine.applied_index)

    def on_events(self, events: list[Event]) -> None:
        """The log's sink: the events of the entries just applied."""
        stream = list(self._stream(events))
        for event in stream:
            self.ring.add(event)
        applied = self.machine.applied_index
        for sub in self.subscriptions:
            if stream:
                sub.offer(stream)
            sub.cursor = applied

    def _stream(self, events: list[Event]) -> Iterator[StreamEvent]:
        tasks = self.machine.tasks
        # A task may finish and leave the state in one batch: its row still names its group.
        evicted = {e.task_id: e.row for e in events if isinstance(e, TaskEvicted)}
        for event in events:
            if isinstance(event, TaskChanged):
                group, workflow_id = _task_keys(tasks.peek(event.task_id), evicted, event.task_id)
                yield StreamEvent(
                    index=event.index,
                    kind="task",
                    key=event.task_id,
                    state=event.status,
                    group=group,
                    workflow_id=workflow_id,
                )
            elif isinstance(event, TasksQueued):
                for task_id in event.task_ids:
                    group, workflow_id = _task_keys(tasks.peek(task_id), evicted, task_id)
                    yield StreamEvent(
                        index=event.index,
                        kind="task",
                        key=task_id,
                        state="queued",
                        group=group,
                        workflow_id=workflow_id,
                    )
            elif isinstance(event, StateRestored):
                self._restored(event.index)
            else:
                found = self._other(event)
                if found is not None:
                    yield found

    def _other(self, event: Event) -> StreamEvent | None:
        index = event.index
        if isinstance(event, WorkflowChanged):
            key = event.workflow_id
            return StreamEvent(
                index=index, kind="workflow", key=key, state=event.status, workflow_id=key
            )
        if isinstance(event, WorkerChanged):
            worker = self.machine.workers.get(event.worker_id)
            group = worker.group if worker else None
            return StreamEvent(
                index=index, kind="worker", key=event.worker_id, state=event.state, group=group
            )
        if isinstance(event, LockChanged):
            return StreamEvent(
                index=index,
                kind="lock",
                key=event.name,
                state=event.kind,
                session=event.session,
                number=event.token,
            )
        if isinstance(event, EntryRejected):  # skipped on every replica: operators must know
            return StreamEvent(
                index=index, kind="entry", key=str(index), state="rejected", reason=event.reason
            )
        if isinstance(event, MessageDelivered):
            return StreamEvent(index=index, kind="message", key=event.agent_id, number=event.cursor)
        return None

    def _restored(self, index: int) -> None:
        """A snapshot replaced the state: subscriptions behind it missed events for good."""
        self.ring.reset(index)
        for sub in self.subscriptions:
            if sub.cursor < index:
                sub.lost_after = sub.cursor
                sub.wake.set()

    # -- subscribing -----------------------------------------------------------------------

    def subscribe(
        self, flt: EventFilter, *, from_index: int | None, replay: bool, current: bool
    ) -> Subscription:
        """A subscription whose queue starts with what was asked for (the held events after
        ``from_index``, or every held one with ``replay``; then with ``current`` the state of
        the named tasks and workflow), and then takes every event applied from now on. Done at
        once, between two applies, so nothing falls between the two."""
        if len(self.subscriptions) >= self.max_subscriptions:
            raise OverloadedError(
                f"this master serves {self.max_subscriptions} event sockets at most"
            )
        start = self.ring.floor if replay else from_index
        held = self.ring.since(start) if start is not None else []
        applied = self.machine.applied_index
        # What was asked for up front (bounded by the ring and the named tasks) comes on top
        # of the limit, which bounds what a slow reader lets pile up after it.
        sub = Subscription(filter=flt, limit=self.queue_limit + len(held), cursor=applied)
        sub.offer(held)
        unknown: list[str] = []
        if current:
            now = self._current(flt)
            sub.limit += len(now)
            sub.offer(now)
            unknown = sorted(t for t in flt.task_ids or () if t not in self.machine.tasks)
        sub.push(
            {"subscribed": True, "index": applied, "floor": self.ring.floor}
            | ({"unknown": unknown} if current else {})
        )
        self.subscriptions.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscriptions.discard(sub)

    def wake_all(self) -> None:
        """Every socket looks at its state again (the master is stopping)."""
        for sub in self.subscriptions:
            sub.wake.set()

    def _current(self, flt: EventFilter) -> list[StreamEvent]:
        """The current state of what ``flt`` names (its tasks; its workflow and that
        workflow's tasks), as events at the applied index."""
        sm, index = self.machine, self.machine.applied_index
        found: list[StreamEvent] = []
        if flt.workflow_id is not None:
            wf = sm.workflows.get(flt.workflow_id)
            if wf is not None:
                for task_id in wf.task_ids:
                    task = sm.tasks.peek(task_id)
                    if task is not None:
                        found.append(task_event(index, task))
                key, state = wf.id, wf.status.value
                found.append(
                    StreamEvent(index=index, kind="workflow", key=key, state=state, workflow_id=key)
                )
        for task_id in sorted(flt.task_ids or ()):
            task = sm.tasks.peek(task_id)
            if task is not None:
                found.append(task_event(index, task))
        return found

    def remove_tasks(self, sub: Subscription, task_ids: list[str]) -> None:
        """Stop watching ``task_ids`` (those a client no longer waits on)."""
        if sub.filter.task_ids is not None:
            sub.filter.task_ids.difference_update(task_ids)

    def add_tasks(self, sub: Subscription, task_ids: list[str], ref: Any) -> None:
        """Watch more tasks: their current state is queued at once (an answer frame naming
        ``ref`` and the ids this master does not know), then their events as they apply."""
        sm, index = self.machine, self.machine.applied_index
        if sub.filter.task_ids is None:
            raise ClientError("this subscription takes every task already: nothing to add")
        if len(sub.filter.task_ids) + len(task_ids) > WATCHED_TASKS_MAX:
            raise OverloadedError(
                f"one event socket watches {WATCHED_TASKS_MAX} tasks at most; add more as these end"
            )
        states: list[StreamEvent] = []
        unknown: list[str] = []
        for task_id in task_ids:
            sub.filter.task_ids.add(task_id)  # unknown too: it may yet arrive (a lagging master)
            task = sm.tasks.peek(task_id)
            if task is None:
                unknown.append(task_id)
            else:
                states.append(task_event(index, task))
        sub.offer(states)
        sub.push({"ref": ref, "index": index, "added": len(task_ids), "unknown": unknown})


def _task_keys(
    task: TaskRecord | None, evicted: dict[str, bytes], task_id: str
) -> tuple[str | None, str | None]:
    """The group and workflow a task event is filtered by, from the task or its evicted row."""
    if task is not None:
        return task.group, task.workflow_id
    row = evicted.get(task_id)
    if row is None:
        return None, None
    head = row_head(row)
    return head.group, head.workflow_id
