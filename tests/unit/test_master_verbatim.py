"""The leader applies its own hot entries as the command it proposed (no second decode), and
that is exactly what its followers decode: same values, same types, same state digest."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from agentflow.cluster.own_entries import OwnEntries
from agentflow.state import StateMachine
from agentflow.state.commands import (
    AssignTasks,
    CancelTask,
    Command,
    NewTask,
    RegisterWorker,
    ReportAttempts,
    SubmitTasks,
    TaskOutcome,
    decode_command,
    encode_command,
)
from agentflow.state.verbatim import VERBATIM_KINDS, decodes_to_itself


class StrId(str):
    """A str subclass: equal to its value, yet not what msgpack gives back."""


def _task(tid: str, **extra: Any) -> NewTask:
    fields: dict[str, Any] = {
        "id": tid,
        "title": tid,
        "description": "",
        "spec": {
            "function": "m:f",
            "args": [1, 2.5, None, {"a": ["x", True]}],
            "kwargs": {"k": [0]},
            "env": {"A": "1"},
        },
        "resources": {"cpu": 1, "mem": 0.5},
        "labels": {"team": "x"},
        "timeout_s": 3,
        "retry_backoff_s": 0.25,
    }
    fields.update(extra)
    return NewTask(**fields)


def _outcome(tid: str, token: int, **extra: Any) -> TaskOutcome:
    return TaskOutcome(task_id=tid, fencing_token=token, status="completed", **extra)


SAME = [
    SubmitTasks(now_ms=5, tasks=[_task("t1"), _task("t2", dependencies=["t1"], key="k")]),
    SubmitTasks(now_ms=5, tasks=[_task("t1")], place=True),
    AssignTasks(now_ms=6, assignments=[("t1", "w1"), ("t2", "w2")]),
    ReportAttempts(
        now_ms=7,
        worker_id="w1",
        started=[("t1", 3)],
        output=[("t1", 3, "stdout", b"hi")],
        outcomes=[_outcome("t1", 3, exit_code=0, result="[1]"), _outcome("t2", 4)],
        place=True,
    ),
]
NOT_SAME = [
    SubmitTasks(now_ms=5, tasks=[_task("t1", dependencies=("t0",))]),  # a tuple: a list back
    # a tuple inside an Any field: a list back as well
    SubmitTasks(now_ms=5, tasks=[_task("t1", spec={"function": "m:f", "args": (1, 2)})]),
    SubmitTasks(now_ms=5, tasks=[_task(StrId("t1"))]),
    SubmitTasks(now_ms=5, tasks=(_task("t1"),)),  # type: ignore[arg-type]
    AssignTasks(now_ms=6, assignments=[["t1", "w1"]]),  # type: ignore[list-item]
    ReportAttempts(now_ms=7, worker_id="w1", started=[["t1", 3]]),  # type: ignore[list-item]
    ReportAttempts(now_ms=7, worker_id="w1", outcomes=[_outcome("t1", True)]),
    CancelTask(now_ms=1, task_id="t1"),  # not a verbatim kind
]


def _typed(value: Any) -> Any:
    """``value`` with every type spelt out, so that equal values of other types differ."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value), tuple((f.name, _typed(getattr(value, f.name))) for f in fields))
    if isinstance(value, list | tuple):
        return (type(value), tuple(_typed(v) for v in value))
    if isinstance(value, dict):
        return (dict, tuple((_typed(k), _typed(v)) for k, v in value.items()))
    return (type(value), value)


@pytest.mark.parametrize("command", SAME, ids=lambda c: type(c).__name__)
def test_what_decodes_to_itself_does_type_for_type(command: Command) -> None:
    assert decodes_to_itself(command)
    assert _typed(decode_command(encode_command(command))) == _typed(command)


@pytest.mark.parametrize("command", NOT_SAME, ids=lambda c: type(c).__name__)
def test_what_would_decode_to_something_else_is_decoded(command: Command) -> None:
    assert not decodes_to_itself(command)


def test_every_verbatim_kind_is_covered_here() -> None:
    assert {type(c) for c in SAME} == set(VERBATIM_KINDS)


def test_only_the_very_bytes_proposed_at_that_index_skip_decoding() -> None:
    own = OwnEntries()
    command = SAME[0]
    data = encode_command(command)
    own.proposed(7, data, command)
    assert own.take(7, bytes(bytearray(data))) is None  # equal bytes, another entry: decode
    own.proposed(7, data, command)
    assert own.take(8, data) is None
    assert own.take(7, data) is command
    assert own.take(7, data) is None  # once
    own.proposed(9, encode_command(NOT_SAME[0]), NOT_SAME[0])
    assert own.take(9, encode_command(NOT_SAME[0])) is None


class Replicas:
    """A leader (applying its own entries through OwnEntries) and a follower (decoding)."""

    def __init__(self) -> None:
        self.leader, self.follower = StateMachine(), StateMachine()
        self.own = OwnEntries()
        self.index = 0
        self.verbatim = 0

    def propose(self, command: Command) -> None:
        self.index += 1
        data = encode_command(command)
        self.own.proposed(self.index, data, command)
        mine = self.own.take(self.index, data)
        if mine is None:
            self.leader.apply_entry(self.index, data)
        else:
            self.verbatim += 1
            self.leader.apply(self.index, mine)
        self.follower.apply_entry(self.index, data)
        assert self.leader.digest() == self.follower.digest(), self.index

    def token(self, tid: str) -> int:
        token = self.leader.tasks[tid].fencing_token
        assert token is not None
        return token


def test_leader_and_follower_reach_the_same_state_digest() -> None:
    r = Replicas()
    for wid in ("w1", "w2"):
        r.propose(
            RegisterWorker(
                now_ms=0,
                worker_id=wid,
                group="default",
                slots=1,
                resources={"cpu": 4.0, "mem": 4.0},
                labels={"team": "x"},
                hostname="h",
                prefetch=1,
            )
        )
    r.propose(SubmitTasks(now_ms=1, tasks=[_task(f"t{i}") for i in range(6)], place=True))
    r.propose(AssignTasks(now_ms=2, assignments=[("t4", "w1")]))
    for at in range(3, 9):
        busy = [t for t in r.leader.tasks.values() if t.fencing_token and t.worker_id]
        for task in busy[:2]:
            wid = task.worker_id
            assert wid is not None
            r.propose(
                ReportAttempts(
                    now_ms=at,
                    worker_id=wid,
                    started=[(task.id, r.token(task.id))],
                    output=[(task.id, r.token(task.id), "stdout", b"out")],
                    outcomes=[_outcome(task.id, r.token(task.id), exit_code=0, result="1")],
                    place=True,
                )
            )
    r.propose(SubmitTasks(now_ms=9, tasks=[_task("odd", dependencies=("t0",))]))  # decoded
    assert r.verbatim >= 6
    assert r.leader.digest() == r.follower.digest()
