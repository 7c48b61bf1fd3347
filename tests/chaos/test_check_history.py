"""history.py round-trips Op and StorageRecord through JSON lines, every field kept."""

from __future__ import annotations

from pathlib import Path

from agentflow.testing.chaos.history import Op, StorageRecord, read_ops, read_storage, write_jsonl


def test_ops_round_trip_through_json_lines(tmp_path: Path) -> None:
    ops = [
        Op(
            process="c1",
            f="submit",
            invoke_ns=10,
            complete_ns=20,
            type="ok",
            args={"key": "k1", "rule": "ok"},
            result={"task_id": "t1"},
        ),
        Op(
            process="c2",
            f="receive",
            invoke_ns=15,
            complete_ns=99,
            type="info",
            args={"agent": "chaos-agent-1"},
            result={"messages": [{"sender": "a", "seq": 1, "message_id": "m-1", "cursor": 3}]},
            error="ReadTimeout: no answer",
        ),
        Op(process="c3", f="task-read", invoke_ns=1, complete_ns=1, type="fail"),
    ]
    path = tmp_path / "ops.jsonl"
    write_jsonl(path, ops)
    assert read_ops(path) == ops
    assert len(path.read_text().splitlines()) == len(ops)


def test_storage_records_round_trip_through_json_lines(tmp_path: Path) -> None:
    records = [
        StorageRecord(
            stream="task:t1", writer="t1/1", token=7, event="start", at_ns=5, accepted=True
        ),
        StorageRecord(
            stream="lock:chaos-lock-0", writer="h", token=3, event="d-1", at_ns=6, accepted=False
        ),
    ]
    path = tmp_path / "storage.jsonl"
    write_jsonl(path, records)
    assert read_storage(path) == records
