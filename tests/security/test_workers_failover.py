"""Finding 7 across a failover: the session secret's hash is replicated, so the worker resumes
on the new leader with its secret while an impostor under its id is still refused there."""

from __future__ import annotations

from agentflow import Client
from tests.e2e.procs import Processes, wait_until
from tests.security.workers_raw import open_session, until_closed


def test_a_worker_resumes_on_a_new_leader_and_an_impostor_is_refused(procs: Processes) -> None:
    cluster = procs.cluster(3)
    worker = procs.worker("w1", cluster.urls, "--heartbeat-interval", "0.5s")
    with Client(cluster.urls) as client:
        task = client.submit("sleep 3; echo survived")
        wait_until(lambda: client.get(task.id).status == "running", 30, "task running")
        old = cluster.leader()
        cluster.kill9(old)
        new = cluster.leader([n for n in cluster.masters if n != old])
        ws, first = open_session(cluster.url(new), "w1")
        frames, code = until_closed(ws)
        assert code == 4409 and [f["t"] for f in [first, *frames]] == ["error"]
        assert "held by another live instance" in first["detail"]
        done = client.wait(task.id, timeout_s=60)
        assert done.ok and done.attempts == 1 and done.worker_id == "w1"
        assert client.output(task.id)["stdout"] == "survived\n"
    assert "held by another" not in worker.log()
