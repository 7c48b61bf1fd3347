"""A worker declared lost while its connection stays open comes back (found by the chaos suite).

A worker frozen (SIGSTOP) or cut off by a partition past the loss timeout is declared lost and
its attempts requeued; when it resumes, its WebSocket session is still open (TCP held the
bytes), so it went on heartbeating on a session whose worker the master counted as lost, and
it was never given a task again. The master now closes the session of a worker it declares
lost; the worker reconnects, registers again and takes tasks.
"""

from __future__ import annotations

import os
import signal

from agentflow import Client
from tests.e2e.procs import Processes, live_workers, wait_until


def _state(client: Client, worker_id: str) -> str | None:
    states = [w["state"] for w in client.workers() if w["id"] == worker_id]
    return states[0] if states else None


def test_a_worker_frozen_past_its_loss_comes_back_and_runs_tasks(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--worker-timeout", "1s", "--heartbeat-interval", "0.2s")
    worker = procs.worker("w1", url, "--slots", "2")
    wait_until(lambda: live_workers(url) == 1, what="w1 registered")
    with Client(url) as client:
        os.kill(worker.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: _state(client, "w1") == "lost", what="w1 declared lost")
        finally:
            os.kill(worker.pid, signal.SIGCONT)
        task = client.submit("echo back")
        done = client.wait(task.id, timeout_s=20)
        assert done.ok and done.worker_id == "w1"
        assert _state(client, "w1") in ("active", "busy")
