"""How the workload classifies an operation's end, what it learns from a history, and what
`stop` records for an operation still in flight: no processes."""

from __future__ import annotations

import httpx
import pytest

from agentflow.errors import (
    ConflictError,
    NotFoundError,
    NotLeaderError,
    OverloadedError,
    StaleTokenError,
    TimeoutExpiredError,
    UnavailableError,
    ValidationError,
)
from agentflow.testing.chaos.clients import Invoker, Shared, Slot, outcome_of
from agentflow.testing.chaos.history import FAIL, INFO, OK, Op, Outcome, Recorder
from agentflow.testing.chaos.workload import learned


@pytest.mark.parametrize(
    ("f", "exc", "outcome"),
    [
        ("submit", ValidationError("bad"), FAIL),
        ("task-read", NotFoundError("gone"), FAIL),
        ("lock-acquire", TimeoutExpiredError("not granted"), FAIL),
        ("lock-acquire", ConflictError("held"), FAIL),
        ("cancel", ConflictError("already finished"), INFO),  # maybe the answer to a repeat
        ("lock-release", StaleTokenError("released"), INFO),
        ("submit", NotLeaderError("no leader"), INFO),
        ("submit", UnavailableError("no master reachable"), INFO),
        ("send", OverloadedError("inbox full"), INFO),
        ("submit", httpx.ReadTimeout("slow"), INFO),
        ("fenced-append", httpx.ConnectError("refused"), INFO),
        ("fenced-append", ConnectionResetError(), INFO),
        ("submit", KeyError("id"), None),  # a bug of the workload, not an answer
    ],
)
def test_a_definite_refusal_fails_and_anything_that_may_have_happened_is_info(
    f: str, exc: Exception, outcome: str | None
) -> None:
    assert outcome_of(f, exc) == outcome


def op(f: str, args: dict[str, object], result: dict[str, object], kind: Outcome = OK) -> Op:
    return Op(process="c0", f=f, invoke_ns=1, complete_ns=2, type=kind, args=args, result=result)


def test_learned_takes_ids_from_ok_answers_and_every_op_s_arguments_and_every_key() -> None:
    history = [
        op("submit", {"key": "k1"}, {"task_id": "t1"}),
        op("submit", {"key": "k2"}, {}, INFO),
        op("workflow", {"key": "w1"}, {"workflow_id": "wf", "task_ids": {"a": "t2", "b": "t3"}}),
        op("cancel", {"task_id": "t9"}, {}, FAIL),
        op("task-read", {"task_id": "t1"}, {"status": "queued"}),
    ]
    found = learned(history)
    assert found.task_ids == {"t1", "t2", "t3", "t9"}
    assert found.task_keys == {"k1", "k2"}
    assert found.workflow_keys == {"w1"}


def test_an_op_in_flight_at_stop_is_recorded_once_as_info_and_the_thread_records_no_more() -> None:
    recorder = Recorder()
    slot = Slot(recorder)
    invoke = Invoker("c0", slot, Shared(seed=1, clients=1, storage_url="", python=""))

    def stopped_meanwhile() -> dict[str, object]:
        slot.abandon()  # the workload gave up waiting while this call ran
        return {"task_id": "t1"}

    assert invoke("submit", {"key": "k"}, stopped_meanwhile) is None
    assert invoke("submit", {"key": "k2"}, lambda: {"task_id": "t2"}) is None
    (only,) = recorder.ops()
    assert (only.f, only.type, only.args) == ("submit", INFO, {"key": "k"})


def test_after_an_info_the_client_goes_on_as_a_new_process() -> None:
    recorder = Recorder()
    invoke = Invoker("c0", Slot(recorder), Shared(seed=1, clients=1, storage_url="", python=""))

    def lost() -> dict[str, object]:
        raise httpx.ReadTimeout("no answer")

    invoke("submit", {"key": "a"}, lambda: {"task_id": "t1"})
    invoke("submit", {"key": "b"}, lost)
    invoke("submit", {"key": "c"}, lambda: {"task_id": "t3"})
    assert [(o.process, o.type) for o in recorder.ops()] == [
        ("c0", OK),
        ("c0", INFO),
        ("c0.1", OK),
    ]
