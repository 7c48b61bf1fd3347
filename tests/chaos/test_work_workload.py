"""The chaos workload against real processes: three masters (the leader killed and restarted
mid-run), two workers and a storage host; then the final reads, and the history it recorded."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from agentflow.testing.chaos.checkers import check_all
from agentflow.testing.chaos.history import (
    FAIL,
    INFO,
    OK,
    Op,
    Recorder,
    StorageRecord,
    read_ops,
    write_jsonl,
)
from agentflow.testing.chaos.storage import StorageClient
from agentflow.testing.chaos.workload import Workload
from tests.chaos.work_hosts import start_storage
from tests.e2e.procs import Processes

pytestmark = pytest.mark.slow

RUN_S = 8.0
KILL_AFTER_S = 3.0
DOWN_S = 2.0
STOP_TIMEOUT_S = 15.0
FINAL_TIMEOUT_S = 40.0
CHECKERS = ("tasks", "attempts", "locks", "messages", "reads")
KINDS = {
    "submit",
    "workflow",
    "cancel",
    "task-read",
    "set-priority",
    "lock-acquire",
    "fenced-append",
    "lock-release",
    "lock-read",
    "send",
    "receive",
    "ack",
    "final-task",
}


def run_workload(
    procs: Processes, tmp_path: Path
) -> tuple[list[Op], list[StorageRecord], Workload]:
    cluster = procs.cluster(3)
    for name in ("w1", "w2"):
        procs.worker(name, cluster.urls, "--slots", "4")
    _, storage_url = start_storage(procs, tmp_path / "storage.jsonl")
    recorder = Recorder()
    urls = [m.url for m in cluster.masters.values()]
    workload = Workload(urls, storage_url, recorder, seed=18, clients=3, pause_s=0.1)
    workload.start()
    time.sleep(KILL_AFTER_S)  # the schedule of the fault, not a wait for a condition
    leader = cluster.leader()
    cluster.kill9(leader)
    time.sleep(DOWN_S)
    cluster.start(leader)
    time.sleep(RUN_S - KILL_AFTER_S - DOWN_S)
    workload.stop(STOP_TIMEOUT_S)
    cluster.wait_converged()
    workload.final_reads(FINAL_TIMEOUT_S)
    with StorageClient(storage_url) as storage:
        records = storage.records()
    return recorder.ops(), records, workload


def test_a_workload_through_a_leader_kill_records_every_kind_and_reads_every_task_back(
    procs: Processes, tmp_path: Path
) -> None:
    ops, records, workload = run_workload(procs, tmp_path)
    assert workload.unexpected == []
    kinds = Counter(op.f for op in ops)
    assert set(kinds) >= KINDS, f"missing {KINDS - set(kinds)}: {kinds}"
    types = Counter(op.type for op in ops)
    assert types[OK] > types[FAIL] + types[INFO], types
    # Every acknowledged submit is read back, ok, after healing: no task vanished.
    finals = {op.args["task_id"]: op for op in ops if op.f == "final-task"}
    submitted = {op.result["task_id"] for op in ops if op.f == "submit" and op.ok}
    assert submitted and submitted <= finals.keys()
    assert all(finals[t].ok for t in submitted)
    # A key submitted twice names one task.
    by_key: dict[str, set[str]] = {}
    for op in ops:
        if op.f == "submit" and op.ok:
            by_key.setdefault(op.args["key"], set()).add(op.result["task_id"])
    assert all(len(ids) == 1 for ids in by_key.values()), by_key
    # The inboxes were drained: each agent's last receive came back empty.
    last = {op.args["agent"]: op for op in ops if op.f == "receive" and op.process == "final"}
    assert last and all(op.ok and op.result["messages"] == [] for op in last.values())
    # Task bodies wrote through the storage host: each completed task ended there, accepted.
    ended = {r.stream for r in records if r.event == "end" and r.accepted}
    completed = {t for t, op in finals.items() if op.result.get("status") == "completed"}
    assert completed and {f"task:{t}" for t in completed} <= ended
    # A lock's holder is named as the master records it, and every answered append is there.
    holders = {op.args["holder"] for op in ops if op.f == "lock-acquire"}
    read = {
        h["holder"] for op in ops if op.f == "lock-read" and op.ok for h in op.result["holders"]
    }
    assert read <= holders
    written = {(r.stream, r.writer, r.token, r.event, r.accepted) for r in records}
    appends = [op for op in ops if op.f == "fenced-append" and op.ok]
    assert appends
    for a in appends:
        key = (f"lock:{a.args['lock']}", a.args["holder"], a.args["token"], a.args["data"])
        assert (*key, a.result["accepted"]) in written
    # The history is JSON lines that read back to the same operations.
    path = tmp_path / "history.jsonl"
    write_jsonl(path, ops)
    assert read_ops(path) == ops
    # And the checkers, over the whole history, find nothing and decide everything.
    results = check_all(ops, records)
    assert [line for r in results for line in r.anomalies] == []
    assert {r.name: r.verdict for r in results} == dict.fromkeys(CHECKERS, "PASS")
