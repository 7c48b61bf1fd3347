"""Queued Python calls go to a free runner together (issue 14), end to end: a more urgent
task that arrives while a batch runs still runs next, each call starts from the runner's own
state, and a cancel of the running call sends the batch's other calls back to run once.

One worker with one slot and a queue of 3: a blocker holds the slot while three calls queue
behind it; when it ends, the three go to the runner in one message.
"""

from __future__ import annotations

from pathlib import Path

from agentflow import Client
from agentflow.client import TaskInfo
from tests.e2e.procs import Proc, Processes, live_workers, wait_until

MODULE = """
import os, pathlib, time

def wait_then_log(go, log, name):
    while not pathlib.Path(go).exists():
        time.sleep(0.01)
    return log_name(log, name)

def log_name(log, name):
    with open(log, "a") as fh:
        fh.write(name + "\\n")
    return name

def leak(log, name):
    os.environ["AF_BATCH_LEAK"] = name
    return log_name(log, name)

def peek(log, name):
    log_name(log, name)
    return os.environ.get("AF_BATCH_LEAK")
"""
WAIT_S = 20.0


def _cluster(procs: Processes, tmp_path: Path) -> tuple[str, Proc]:
    (tmp_path / "af_rbatch.py").write_text(MODULE)
    _, url = procs.master("m1")
    worker = procs.worker(
        "w1",
        url,
        "--slots",
        "1",
        "--prefetch",
        "3",
        "--runner-batch",
        "4",
        "--log-level",
        "info",  # a yield is logged at info
        env={"PYTHONPATH": str(tmp_path)},
    )
    wait_until(lambda: live_workers(url) == 1, what="w1 registered")
    return url, worker


def _call(client: Client, name: str, *args: str, priority: str = "low") -> TaskInfo:
    return client.submit(function=f"af_rbatch:{name}", args=list(args), priority=priority)


def _queued_behind_a_blocker(
    client: Client, tmp_path: Path, calls: list[tuple[str, ...]]
) -> tuple[TaskInfo, list[TaskInfo]]:
    """A blocker running, ``calls`` queued on the worker behind it (not yet released)."""
    log = str(tmp_path / "order.txt")
    blocker = _call(client, "wait_then_log", str(tmp_path / "go0"), log, "blocker")
    wait_until(lambda: client.get(blocker.id).status == "running", what="blocker running")
    queued = [_call(client, name, *args) for name, *args in calls]
    wait_until(
        lambda: all(client.get(t.id).status == "assigned" for t in queued), what="queued on w1"
    )
    return blocker, queued


def test_an_urgent_call_that_arrives_while_a_batch_runs_runs_next(
    procs: Processes, tmp_path: Path
) -> None:
    url, worker = _cluster(procs, tmp_path)
    log, go1 = str(tmp_path / "order.txt"), tmp_path / "go1"
    with Client(url) as client:
        _, (first, *rest) = _queued_behind_a_blocker(
            client,
            tmp_path,
            [("wait_then_log", str(go1), log, "x"), ("log_name", log, "y"), ("log_name", log, "z")],
        )
        (tmp_path / "go0").touch()  # x, y and z go to the runner in one message; x waits
        wait_until(lambda: client.get(first.id).status == "running", what="x running")
        urgent = _call(client, "log_name", log, "urgent", priority="urgent")
        wait_until(lambda: "yield to a more urgent attempt" in worker.log(), what="y, z yield")
        go1.touch()
        for task in (first, urgent, *rest):
            assert client.wait(task.id, timeout_s=WAIT_S).ok
        order = Path(log).read_text().split()
        assert order == ["blocker", "x", "urgent", "y", "z"]


def test_each_call_of_a_batch_starts_from_the_runners_own_state(
    procs: Processes, tmp_path: Path
) -> None:
    url, _ = _cluster(procs, tmp_path)
    log = str(tmp_path / "order.txt")
    with Client(url) as client:
        _, queued = _queued_behind_a_blocker(
            client, tmp_path, [("leak", log, "a"), ("peek", log, "b"), ("peek", log, "c")]
        )
        (tmp_path / "go0").touch()
        results = [client.wait(task.id, timeout_s=WAIT_S) for task in queued]
        assert [info.raw["result"] for info in results] == ['"a"', "null", "null"]
        assert Path(log).read_text().split() == ["blocker", "a", "b", "c"]


def test_a_cancel_of_the_running_call_of_a_batch_runs_the_others_once(
    procs: Processes, tmp_path: Path
) -> None:
    url, _ = _cluster(procs, tmp_path)
    log = str(tmp_path / "order.txt")
    with Client(url) as client:
        _, (stuck, *rest) = _queued_behind_a_blocker(
            client,
            tmp_path,
            [
                ("wait_then_log", str(tmp_path / "never"), log, "stuck"),
                ("log_name", log, "y"),
                ("log_name", log, "z"),
            ],
        )
        (tmp_path / "go0").touch()
        wait_until(lambda: client.get(stuck.id).status == "running", what="stuck running")
        client.cancel(stuck.id)
        assert client.wait(stuck.id, timeout_s=WAIT_S).status == "cancelled"
        for task in rest:
            info = client.wait(task.id, timeout_s=WAIT_S)
            assert info.ok and info.raw["retries"] == 0
        assert Path(log).read_text().split() == ["blocker", "y", "z"]
