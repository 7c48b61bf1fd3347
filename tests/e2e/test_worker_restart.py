"""Workers as a user restarts them (issue 13): real master and worker processes.

A drain the worker asked for itself (SIGTERM) ends with that process; an operator's drain
outlives it and the next process says so. Two workers started with defaults on one host both
work; a second process under a connected worker's explicit id stops with one line, and one
under the id of a crashed worker waits for the master to declare the old one lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

from agentflow import Client
from tests.e2e.procs import BIN, Proc, Processes, live_workers, wait_until

CLI = str(BIN / "agentflow")
OPERATOR_DRAIN_LINE = "is drained by an operator"


def _state(client: Client, worker_id: str) -> str | None:
    states = [w["state"] for w in client.workers() if w["id"] == worker_id]
    return states[0] if states else None


def _worker(procs: Processes, log: Path, *args: str) -> Proc:
    """A worker process with its own log file (``procs.worker`` always names an id)."""
    argv = [str(BIN / "agentflow-worker"), *args, "--log-level", "warning"]
    proc = Proc(argv, log)
    procs.procs.append(proc)
    return proc


def test_a_worker_restarted_after_sigterm_takes_new_tasks(procs: Processes) -> None:
    _, url = procs.master("m1")
    first = procs.worker("w1", url)
    wait_until(lambda: live_workers(url) == 1, what="w1 registered")
    assert first.terminate() == 0  # drains (nothing runs), says bye, exits
    procs.worker("w1", url)
    with Client(url) as client:
        wait_until(lambda: _state(client, "w1") == "active", what="restarted w1 active")
        task = client.submit("echo after-restart")
        done = client.wait(task.id, timeout_s=20)
        assert done.ok and done.worker_id == "w1"
        assert [w["drained_by"] for w in client.workers()] == [None]


def test_an_operator_drain_outlives_a_restart_and_the_worker_says_so(procs: Processes) -> None:
    _, url = procs.master("m1")
    first = _worker(procs, procs.root / "w1-first.log", "--worker-id", "w1", "--master-url", url)
    wait_until(lambda: live_workers(url) == 1, what="w1 registered")
    drained = subprocess.run(
        [CLI, "worker", "drain", "w1", "--master-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert drained.returncode == 0, drained.stderr
    assert first.terminate() == 0
    second = _worker(procs, procs.root / "w1-second.log", "--worker-id", "w1", "--master-url", url)
    wait_until(lambda: OPERATOR_DRAIN_LINE in second.log(), what="the drain told in the log")
    with Client(url) as client:
        [view] = client.workers()
        assert view["state"] == "draining" and view["drained_by"] == "operator"
        client.drain_worker("w1", drain=False)  # the operator lifts it: work flows again
        done = client.wait(client.submit("echo back").id, timeout_s=20)
        assert done.ok and done.worker_id == "w1"
    assert second.log().count(OPERATOR_DRAIN_LINE) == 1
    assert OPERATOR_DRAIN_LINE not in first.log()


def test_two_workers_with_default_ids_on_one_host_both_run_tasks(
    procs: Processes, tmp_path: Path
) -> None:
    _, url = procs.master("m1")
    workers = [
        _worker(procs, procs.root / f"default-{i}.log", "--master-url", url, "--slots", "1")
        for i in range(2)
    ]
    wait_until(lambda: live_workers(url) == 2, what="both default workers registered")
    go = tmp_path / "go"
    barrier = f"while [ ! -e {go} ]; do sleep 0.02; done; echo $AGENTFLOW_WORKER_ID"
    with Client(url) as client:
        tasks = [client.submit(barrier) for _ in range(2)]
        # One slot each: both run at once only if both workers took one.
        wait_until(
            lambda: all(client.get(t.id).status == "running" for t in tasks),
            what="both tasks running",
        )
        go.touch()
        ran_on = {client.wait(t.id, timeout_s=20).worker_id for t in tasks}
    host = socket.gethostname()
    assert ran_on == {f"{host}-{w.pid}" for w in workers}
    assert all(w.alive() for w in workers)


def test_a_second_worker_under_a_connected_id_exits_with_one_line(procs: Processes) -> None:
    _, url = procs.master("m1")
    first = procs.worker("w1", url)
    wait_until(lambda: live_workers(url) == 1, what="first w1 registered")
    second = subprocess.run(
        [str(BIN / "agentflow-worker"), "--worker-id", "w1", "--master-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert second.returncode != 0
    assert second.stderr.strip().splitlines() == [
        "error: worker id w1 is in use by another connected worker; "
        "stop that one or start this one with another --worker-id"
    ]
    with Client(url) as client:
        done = client.wait(client.submit("echo still-here").id, timeout_s=20)
        assert done.ok and done.worker_id == "w1"
    assert first.alive()


def test_a_worker_under_a_crashed_workers_id_waits_for_its_loss(procs: Processes) -> None:
    # Long enough for the heir's process to start (and be refused) before the loss, even on a
    # loaded machine where starting a worker takes seconds.
    _, url = procs.master("m1", None, "--worker-timeout", "15s", "--heartbeat-interval", "0.5s")
    crashed = procs.worker("w1", url)
    with Client(url) as client:
        held = client.submit("sleep 30")
        wait_until(lambda: client.get(held.id).status == "running", what="an attempt held")
        crashed.kill9()  # goes away holding the attempt: the id stays taken until it is lost
        wait_until(lambda: _state(client, "w1") == "offline", what="w1 offline")
        heir = _worker(
            procs,
            procs.root / "w1-heir.log",
            "--worker-id",
            "w1",
            "--master-url",
            url,
            "--slots",
            "2",
        )
        wait_until(  # the old one is declared lost 15 s after it went silent
            lambda: _state(client, "w1") == "active", timeout_s=45, what="the heir takes the id"
        )
        done = client.wait(client.submit("echo heir").id, timeout_s=20)
        assert done.ok and done.worker_id == "w1"
        client.cancel(held.id)
    with contextlib.suppress(ProcessLookupError):  # the crashed worker's orphaned task
        os.killpg(crashed.pid, signal.SIGKILL)
    assert heir.alive()
    assert heir.log().count("is still held by its previous instance") == 1
