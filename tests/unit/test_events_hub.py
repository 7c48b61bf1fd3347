"""The event stream's bookkeeping, without sockets: the master's ring, filters and cursor
rule (api/event_hub.py), and the SDK's watch of many tasks over one socket
(client/_events.py): what a reconnect resumes, and what it adds again."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest

from agentflow.api.event_hub import EventFilter, EventHub, EventRing, StreamEvent, Subscription
from agentflow.api.event_routes import FRAME_EVENTS_MAX, _next_frame
from agentflow.client._events import Ended, EndWatch
from agentflow.errors import EventsLostError, OverloadedError
from agentflow.state import StateLimits, StateMachine
from agentflow.state.commands import CancelTask, NewTask, SubmitTasks
from agentflow.state.events import StateRestored, TaskEvicted


def task(index: int, task_id: str, status: str, group: str = "default") -> StreamEvent:
    return StreamEvent(index=index, kind="task", key=task_id, state=status, group=group)


def test_the_ring_holds_the_latest_events_and_refuses_a_resume_from_before_them() -> None:
    ring = EventRing(3)
    for i, status in enumerate(["queued", "assigned", "running", "completed"], start=1):
        ring.add(task(i, "a", status))
    assert ring.floor == 1  # the event of entry 1 was dropped: a resume after 1 is whole
    assert [e.index for e in ring.since(1)] == [2, 3, 4]
    assert [e.index for e in ring.since(3)] == [4]
    assert ring.since(4) == []
    with pytest.raises(EventsLostError) as lost:
        ring.since(0)
    assert lost.value.status == 410 and lost.value.extra["floor"] == 1


def test_a_restore_moves_the_floor_to_the_state_it_jumped_to() -> None:
    ring = EventRing(10)
    ring.add(task(5, "a", "queued"))
    ring.reset(40)
    assert ring.events == type(ring.events)() and ring.floor == 40
    with pytest.raises(EventsLostError):
        ring.since(39)


def test_filters_each_given_must_match_and_a_missing_field_does_not() -> None:
    wf_task = StreamEvent(index=1, kind="task", key="t1", state="queued", workflow_id="w")
    wf_end = StreamEvent(index=2, kind="workflow", key="w", state="completed", workflow_id="w")
    worker = StreamEvent(index=3, kind="worker", key="k", state="busy", group="gpu")
    lock = StreamEvent(index=4, kind="lock", key="L", state="granted", session="s", number=7)
    everything = [wf_task, wf_end, worker, lock]
    assert [e for e in everything if EventFilter().takes(e)] == everything
    by_workflow = EventFilter(workflow_id="w")
    assert [e for e in everything if by_workflow.takes(e)] == [wf_task, wf_end]
    by_group = EventFilter(group="gpu")
    assert [e for e in everything if by_group.takes(e)] == [worker]
    by_task = EventFilter(task_ids={"t1"})
    assert [e for e in everything if by_task.takes(e)] == [wf_task]
    locks_only = EventFilter(kinds=frozenset({"lock"}))
    assert [e for e in everything if locks_only.takes(e)] == [lock]
    ends = EventFilter(ends_only=True)
    assert [e for e in everything if ends.takes(e)] == [wf_end, worker, lock]


def _machine_with(*task_ids: str) -> StateMachine:
    sm = StateMachine()
    tasks = [NewTask(id=t, title=t, description="", spec={"command": "true"}) for t in task_ids]
    sm.apply(1, SubmitTasks(now_ms=1, tasks=tasks))
    sm.drain_events()
    return sm


def test_a_subscription_gets_the_current_state_then_what_applies_and_is_bounded() -> None:
    sm = _machine_with("a", "b")
    hub = EventHub(sm, ring_size=100, queue_limit=3, max_subscriptions=1)
    hub.started()
    sub = hub.subscribe(
        EventFilter(task_ids={"a", "zz"}), from_index=None, replay=False, current=True
    )
    first, done = list(sub.pending)
    assert isinstance(first, StreamEvent) and (first.key, first.state) == ("a", "queued")
    assert isinstance(done, dict) and done["subscribed"] and done["unknown"] == ["zz"]
    with pytest.raises(OverloadedError):
        hub.subscribe(EventFilter(), from_index=None, replay=False, current=False)
    sub.pending.clear()
    hub.on_events([])  # nothing applied: nothing queued
    sm.applied_index = 9
    hub.on_events([StateRestored(index=9)])  # the state jumped past the cursor (1)
    assert sub.lost_after == 1
    sub.lost_after = None
    assert sub.limit == 3 + 1  # the limit, on top of what was sent up front
    sub.offer(task(10 + i, "a", "running") for i in range(sub.limit + 1))
    assert sub.overflowed and sub.broken.is_set() and not sub.pending


def test_an_end_drops_its_task_from_an_ends_only_filter() -> None:
    flt = EventFilter(task_ids={"a"}, ends_only=True)
    assert not flt.takes(task(1, "a", "running"))
    end = task(2, "a", "completed")
    assert flt.takes(end)
    flt.passed(end)
    assert not flt.takes(task(3, "a", "failed")) and flt.task_ids == set()


# -- the SDK's side -------------------------------------------------------------------------


def frames(sent: list[str]) -> list[dict[str, Any]]:
    return [json.loads(f) for f in sent]


def end(task_id: str, index: int, status: str = "completed") -> dict[str, Any]:
    return {
        "index": index,
        "kind": "task",
        "task_id": task_id,
        "status": status,
        "exit_code": 0,
        "reason": None,
        "result": "7",
        "result_format": "json",
    }


def test_a_watch_resumes_from_its_index_and_adds_again_what_was_not_confirmed() -> None:
    watch, heard = EndWatch(), list[Ended]()
    sink = heard.append
    assert frames(watch.opened()) == [{"kinds": ["task"], "ends_only": True, "task_ids": []}]
    watch.take(json.dumps({"subscribed": True, "index": 5, "floor": 0}))
    [add] = frames(watch.add_frames(watch.watch(["a", "b"], sink)))
    assert add["add"] == ["a", "b"]
    watch.take(json.dumps({"ref": add["ref"], "index": 6, "added": 2, "unknown": []}))
    [add_c] = frames(watch.add_frames(watch.watch(["c"], sink)))  # never answered
    told = watch.take(json.dumps({"index": 8, "events": [end("a", 8)]}))
    assert [(s, e.task_id, e.info and e.info.raw["result"]) for s, e in told] == [(sink, "a", "7")]
    watch.dropped()
    first, again = frames(watch.opened())
    assert first["from_index"] == 8 and first["task_ids"] == ["b"]  # confirmed, still running
    assert again["add"] == ["c"] and again["ref"] != add_c["ref"]  # state read afresh
    with pytest.raises(EventsLostError):
        watch.take(json.dumps({"error": {"status": 410, "code": "events-lost", "detail": "x"}}))
    watch.lost()
    watch.dropped()
    first, again = frames(watch.opened())
    assert "from_index" not in first and first["task_ids"] == []
    assert sorted(again["add"]) == ["b", "c"]


def test_a_task_the_master_does_not_know_is_asked_about_and_an_end_without_outcome_too() -> None:
    watch, heard = EndWatch(), list[Ended]()
    watch.opened()
    watch.take(json.dumps({"subscribed": True, "index": 1, "floor": 0}))
    [add] = frames(watch.add_frames(watch.watch(["gone", "evicted"], heard.append)))
    told = watch.take(json.dumps({"ref": add["ref"], "index": 2, "added": 2, "unknown": ["gone"]}))
    assert [e for _, e in told] == [Ended("gone")]  # still watched: the waiter asks by HTTP
    bare = {"index": 3, "kind": "task", "task_id": "evicted", "status": "completed"}
    told = watch.take(json.dumps({"index": 3, "events": [bare]}))
    assert [e for _, e in told] == [Ended("evicted")]
    assert "gone" in watch.sinks and "evicted" not in watch.sinks


def test_a_wait_given_up_tells_the_master_to_stop_watching_its_tasks() -> None:
    watch = EndWatch()
    first, second = list[Ended](), list[Ended]()
    assert watch.unwatch(["a"], first.append) == []  # nothing watched: nothing to say
    watch.watch(["a", "b"], first.append)
    watch.watch(["b"], second.append)
    assert watch.unwatch(["a", "b"], first.append) == []  # the socket is down
    watch.watch(["a"], first.append)
    watch.opened()
    assert frames(watch.unwatch(["a"], first.append)) == [{"remove": ["a"]}]
    assert frames(watch.unwatch(["b"], second.append)) == [{"remove": ["b"]}]
    assert watch.sinks == {}


def test_a_frame_cut_inside_one_entry_carries_the_index_before_that_entry() -> None:
    sm = _machine_with("a")
    sub = Subscription(filter=EventFilter(), limit=10_000, cursor=7)
    sub.offer([task(5, "a", "queued")])
    sub.offer(task(6, "a", "running") for _ in range(FRAME_EVENTS_MAX + 1))
    svc = SimpleNamespace(machine=sm)
    first = json.loads(_next_frame(svc, sub))  # type: ignore[arg-type]
    assert len(first["events"]) == FRAME_EVENTS_MAX and first["index"] == 5
    second = json.loads(_next_frame(svc, sub))  # type: ignore[arg-type]
    assert len(second["events"]) == 2 and second["index"] == 7  # all applied so far
    assert sub.sent_index == 7


def test_a_task_that_finishes_and_leaves_the_state_in_one_batch_keeps_its_group() -> None:
    sm = StateMachine(limits=StateLimits(max_finished_tasks=0, live_finished_tasks=0))
    hub = EventHub(sm, ring_size=100, queue_limit=10, max_subscriptions=1)
    hub.started()
    sub = hub.subscribe(EventFilter(group="gpu"), from_index=None, replay=False, current=False)
    sub.pending.clear()
    new = NewTask(id="g", title="g", description="", spec={"command": "true"}, group="gpu")
    sm.apply(1, SubmitTasks(now_ms=1, tasks=[new]))
    sm.apply(2, CancelTask(now_ms=2, task_id="g"))
    events = sm.drain_events()
    assert any(isinstance(e, TaskEvicted) for e in events) and sm.tasks.peek("g") is None
    hub.on_events(events)
    states = [e.state for e in sub.pending if isinstance(e, StreamEvent)]
    assert states == ["queued", "cancelled"]  # the end reached the group's subscriber
