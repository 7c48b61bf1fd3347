"""Pushing what entries assign: many assignments per frame to a worker that takes them, and
per worker always in log order (issue 14)."""

from __future__ import annotations

from typing import Any

from agentflow import wire
from agentflow.api.sessions import SessionHub, WorkerSession
from agentflow.state.commands import NewTask, SubmitTasks
from tests.unit.test_inline_placement import Log


def _frames(session: WorkerSession) -> list[dict[str, Any]]:
    out = []
    while not session.outbound.empty():
        data = session.outbound.get_nowait()
        assert data is not None
        out.append(wire.unpack(data, wire.MAX_FRAME_BYTES))
    return out


def _hub(log: Log, *, batches: bool) -> tuple[SessionHub, WorkerSession]:
    hub = SessionHub(log.sm)
    session = WorkerSession("w1", None, batches=batches)  # type: ignore[arg-type]
    hub.attach(session)
    return hub, session


def _submit_three(log: Log) -> None:
    tasks = [
        NewTask(id=f"t{i}", title="t", description="", spec={"command": "true"}) for i in range(3)
    ]
    log.apply(SubmitTasks(now_ms=0, tasks=tasks, place=True))


def test_one_entrys_assignments_travel_in_one_frame() -> None:
    log = Log()
    log.worker("w1", slots=3, prefetch=0)
    hub, session = _hub(log, batches=True)
    log.sm.drain_events()
    _submit_three(log)
    hub.on_events(log.sm.drain_events())
    [frame] = _frames(session)
    assert frame["t"] == "assigns"
    assert [(f["task_id"], f["token"]) for f in frame["frames"]] == [
        ("t0", log.index),
        ("t1", log.index),
        ("t2", log.index),
    ]


def test_a_worker_of_protocol_1_gets_one_frame_per_assignment() -> None:
    log = Log()
    log.worker("w1", slots=3, prefetch=0)
    hub, session = _hub(log, batches=False)
    log.sm.drain_events()
    _submit_three(log)
    hub.on_events(log.sm.drain_events())
    assert [f["t"] for f in _frames(session)] == ["assign"] * 3


def test_a_withdrawal_reaches_the_worker_before_the_assignment_that_replaces_it() -> None:
    log = Log()
    log.worker("w1", slots=1, prefetch=1)
    hub, session = _hub(log, batches=True)
    log.submit("running", at_ms=0, priority="low")
    log.submit("queued", at_ms=1, priority="low")
    log.submit("urgent", at_ms=2, priority="urgent")
    hub.on_events(log.sm.drain_events())
    frames = [(f["t"], f.get("task_id")) for f in _frames(session)]
    assert frames == [
        ("assigns", None),
        ("withdraw", "queued"),
        ("assign", "urgent"),
    ]


def test_an_assignment_superseded_before_it_is_pushed_is_not_pushed() -> None:
    log = Log()
    log.worker("w1", slots=1, prefetch=1)
    hub, session = _hub(log, batches=True)
    log.submit("running", at_ms=0, priority="low")
    log.submit("queued", at_ms=1, priority="low")
    log.submit("urgent", at_ms=2, priority="urgent")
    log.finish("w1", "running", at_ms=3)  # "queued" is assigned again, a new token
    hub.on_events(log.sm.drain_events())
    pushed = [f for f in _frames(session) if f["t"] in ("assign", "assigns")]
    tokens = [(g["task_id"], g["token"]) for f in pushed for g in f.get("frames", [f])]
    assert ("queued", log.sm.tasks["queued"].fencing_token) in tokens
    assert [t for t, _ in tokens].count("queued") == 1  # the withdrawn attempt never pushed


def test_what_was_placed_before_the_session_attached_is_pushed_when_it_does() -> None:
    """A worker re-registers (its hello held t9), then a submit places three tasks on it
    before its session is attached: those pushes found no session; attaching catches up with
    exactly those, once, and not with what the worker said it runs."""
    log = Log()
    log.worker("w1", slots=4, prefetch=0)
    hub = SessionHub(log.sm)
    _submit_three(log)
    hub.on_events(log.sm.drain_events())  # no session: nothing is pushed anywhere
    session = WorkerSession("w1", None, batches=True)  # type: ignore[arg-type]
    hub.attach(session)
    held = {"t1": log.index}  # the hello said t1 runs (say it started before a restart)
    hub.catch_up(session, held)
    [frame] = _frames(session)
    assert frame["t"] == "assigns"
    assert sorted(f["task_id"] for f in frame["frames"]) == ["t0", "t2"]
    hub.catch_up(session, {"t0": log.index, "t1": log.index, "t2": log.index})
    assert _frames(session) == []
