"""Finding 2 in-process: committed entries that cannot be decoded or applied are skipped alike.

Every replica runs ``StateMachine.apply_entry`` on the same bytes; a rejected entry changes
nothing but the applied index and the rejected-entry record, and never raises.
"""

from __future__ import annotations

from pathlib import Path

import msgpack
import pytest

from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.image import Image
from agentflow.cluster.node import RaftLog
from agentflow.errors import ValidationError
from agentflow.raft import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from agentflow.state import StateMachine, encode_command
from agentflow.state.commands import (
    CancelTask,
    CommandDecodeError,
    ConnectAgent,
    NewTask,
    SubmitTasks,
    decode_command,
)
from agentflow.state.events import EntryRejected
from agentflow.state.machine import HANDLERS


def _pack(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


GARBAGE = [
    b"\xc1",  # never used in msgpack
    b"\x00\x01\x02 not msgpack at all",
    _pack(["NoSuchCommand", {"now_ms": 1}]),
    _pack(["CancelTask", [1, 2]]),
    _pack(["CancelTask", {"now_ms": 1, "bogus": 1}]),
    _pack(["SubmitTasks", {"now_ms": 1, "tasks": [{"x": 1}]}]),
    _pack([1, 2, 3]),
    _pack({"a": 1}),
    _pack(None),
    _pack(["SubmitTasks", {"now_ms": 1, "tasks": 5}]),
    _pack(["AckMessages", {"now_ms": 1, "agent_id": "a", "cursor": "not a number"}]),
    _pack(["CancelTask", {"now_ms": "soon", "task_id": "t1"}]),
    _pack(["CancelTask", {"now_ms": 1, "task_id": ["t1"]}]),
    _pack(["SetUnschedulable", {"now_ms": 1, "reasons": {"t1": 5}}]),
    _pack(["AssignTasks", {"now_ms": 1, "assignments": [["t1", "w1", "extra"]]}]),
    _pack(
        [
            "SubmitTasks",
            {"now_ms": 1, "tasks": [{"id": "t9", "title": 1, "description": "", "spec": {}}]},
        ]
    ),
]


def _submit(index: int, task_id: str) -> bytes:
    task = NewTask(id=task_id, title=task_id, description="echo hi", spec={"command": "echo hi"})
    return encode_command(SubmitTasks(now_ms=1000 + index, tasks=[task]))


@pytest.mark.parametrize("data", GARBAGE)
def test_decode_failure_is_one_typed_error(data: bytes) -> None:
    with pytest.raises(CommandDecodeError):
        decode_command(data)


AGENT = encode_command(ConnectAgent(now_ms=1, agent_id="a", ttl_ms=60_000))


def test_garbage_entries_are_rejected_recorded_and_answered_with_422() -> None:
    sm = StateMachine()
    sm.apply_entry(1, _submit(1, "t1"))
    sm.apply_entry(2, AGENT)
    before = sm.tasks["t1"].to_wire()
    sm.drain_events()
    for offset, data in enumerate(GARBAGE, start=3):
        result = sm.apply_entry(offset, data)
        assert isinstance(result, ValidationError), (data, result)
        assert result.status == 422
        assert f"log index {offset}" in str(result)
        assert sm.applied_index == offset
    assert sm.rejected.total == len(GARBAGE)
    assert len(sm.rejected.last) <= sm.limits.max_rejected_kept
    rejected = [e for e in sm.drain_events() if isinstance(e, EntryRejected)]
    assert [e.index for e in rejected] == list(range(3, 3 + len(GARBAGE)))
    assert sm.tasks["t1"].to_wire() == before  # nothing else changed
    sm.apply_entry(100, _submit(100, "t2"))  # and the log goes on
    assert "t2" in sm.tasks


def test_replicas_skip_identically_and_a_snapshot_keeps_the_record() -> None:
    log = [_submit(1, "t1"), AGENT, *GARBAGE, _submit(99, "t2")]
    replicas = [StateMachine() for _ in range(3)]
    for sm in replicas:
        for index, data in enumerate(log, start=1):
            sm.apply_entry(index, data)
    digests = {sm.digest() for sm in replicas}
    assert len(digests) == 1
    restored = StateMachine()
    restored.restore(replicas[0].snapshot())
    assert restored.digest() in digests
    assert restored.rejected.view() == replicas[0].rejected.view()
    assert restored.rejected.total == len(GARBAGE)


def test_the_record_is_bounded() -> None:
    sm = StateMachine()
    for index in range(1, 200):
        sm.apply_entry(index, b"\xc1")
    assert sm.rejected.total == 199
    assert len(sm.rejected.last) == sm.limits.max_rejected_kept
    assert sm.rejected.last[-1].index == 199


def test_a_handler_that_fails_on_data_rejects_the_entry_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A data error a handler did not foresee is a rejection, not a crash; an assertion is."""

    def broken(sm: StateMachine, index: int, command: CancelTask) -> None:
        raise KeyError(command.task_id)

    replicas = [StateMachine() for _ in range(3)]
    monkeypatch.setitem(HANDLERS, CancelTask, broken)
    cancel = encode_command(CancelTask(now_ms=5, task_id="t1"))
    for sm in replicas:
        sm.apply_entry(1, _submit(1, "t1"))
        result = sm.apply_entry(2, cancel)
        assert isinstance(result, ValidationError)
        assert "CancelTask: KeyError" in str(result)
        assert sm.rejected.total == 1
    assert len({sm.digest() for sm in replicas}) == 1

    def asserting(sm: StateMachine, index: int, command: CancelTask) -> None:
        raise AssertionError("an invariant broke")

    monkeypatch.setitem(HANDLERS, CancelTask, asserting)
    with pytest.raises(AssertionError):
        replicas[0].apply_entry(3, cancel)


async def test_a_snapshot_that_does_not_restore_never_reaches_the_core(tmp_path: Path) -> None:
    """The leader's snapshot replaces a follower's state for good: it is tried first."""
    # A joining node takes any peer that proved the token until it learns a configuration.
    config = ClusterConfig(node_id="n2", data_dir=tmp_path, join=True, token="t")
    node = RaftLog(config, StateMachine())
    try:
        good = StateMachine()
        good.apply_entry(1, _submit(1, "t1"))
        voters = ConfState(voters=frozenset({"n1", "n2"}))
        image = Image(index=5, term=2, conf_state=voters, machine=good.snapshot())
        for data, kept in [
            (b"\xc1garbage", False),
            (Image(index=5, term=2, conf_state=voters, machine=b"\x93\x01").pack(), False),
            (image.pack(), True),
        ]:
            meta = SnapshotMetadata(index=5, term=2, conf_state=voters)
            msg = Message(
                type=MessageType.SNAPSHOT,
                from_="n1",
                to="n2",
                term=2,
                snapshot=Snapshot(metadata=meta, data=data),
            )
            node._on_message(msg)
            assert (msg in node._inbox) is kept
        assert node.machine.applied_index == 0  # nothing was restored by the check
    finally:
        await node._raftstore.close()
        await node._statestore.close()
