"""Finding 7, sessions: a worker id has one live session.

Only the instance holding the session secret issued at registration may open another session
under a live worker's id (it resumes: after a network blip, a master restart, a new leader);
anyone else is refused with an error frame and close code 4409, and receives no task.
"""

from __future__ import annotations

from pathlib import Path

from agentflow import Client
from tests.e2e.procs import BIN, Proc, Processes, live_workers, wait_until
from tests.security.workers_raw import open_session, recv_kind, report, until_closed

CONFLICT = 4409


def _refused(url: str, worker_id: str, **hello: object) -> str:
    """Open a session that must be refused; its error detail."""
    ws, first = open_session(url, worker_id, **hello)
    frames, code = until_closed(ws)
    frames.insert(0, first)
    assert code == CONFLICT, frames
    assert [f["t"] for f in frames] == ["error"], frames
    detail: str = first["detail"]
    return detail


def _worker_logging_to(procs: Processes, worker_id: str, url: str, log: Path) -> Proc:
    """A worker process like ``procs.worker`` but with its own log file (same id, two logs)."""
    argv = [str(BIN / "agentflow-worker"), "--worker-id", worker_id, "--master-url", url]
    proc = Proc([*argv, "--slots", "2", "--log-level", "warning"], log)
    procs.procs.append(proc)
    return proc


def test_a_second_session_under_a_live_worker_id_is_refused(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--heartbeat-interval", "0.5s")
    procs.worker("w1", url)
    wait_until(lambda: live_workers(url) == 1, what="w1 registered")
    with Client(url) as client:
        task = client.submit("sleep 2; echo $TASK_SECRET", env={"TASK_SECRET": "hush-7"})
        wait_until(lambda: client.get(task.id).status == "running", what="task running")
        token = client.get(task.id).raw["fencing_token"]
        # No secret, a guessed one, and one claiming the running attempt: all refused, and
        # none of them is sent the task (or its env).
        for hello in ({}, {"secret": "guess"}, {"running": [[task.id, token]]}):
            detail = _refused(url, "w1", **hello)
            assert "held by another live instance" in detail
            assert "hush-7" not in detail
        done = client.wait(task.id, timeout_s=30)
        assert done.ok and done.attempts == 1 and done.worker_id == "w1"
        assert client.output(task.id)["stdout"] == "hush-7\n"
        assert [w["state"] for w in client.workers() if w["id"] == "w1"] == ["active"]


def test_two_worker_processes_with_one_id_do_not_fight(procs: Processes) -> None:
    _, url = procs.master("m1")
    first = procs.worker("w1", url, "--slots", "2")
    wait_until(lambda: live_workers(url) == 1, what="first w1 registered")
    second = _worker_logging_to(procs, "w1", url, procs.root / "w1-second.log")
    with Client(url) as client:
        tasks = [client.submit(f"sleep 0.5; echo {i}") for i in range(4)]
        for task in tasks:
            done = client.wait(task.id, timeout_s=30)
            assert done.ok and done.attempts == 1, done
    # The second stops with one line instead of retrying forever; the first works on.
    assert second.popen.wait(timeout=30) != 0
    assert "w1 is in use by another connected worker" in second.log()
    assert first.alive()
    assert "in use by another" not in first.log()


def test_the_instance_with_its_secret_resumes_and_replaces_its_old_session(
    procs: Processes,
) -> None:
    _, url = procs.master("m1")
    old, welcome = open_session(url, "w-res")
    secret = welcome["secret"]
    with Client(url) as client:
        task = client.submit("true")
        assign = recv_kind(old, "assign")
        held = [[task.id, assign["token"]]]
        # The same instance reconnects while its old session still looks alive: it takes over.
        new, welcome = open_session(url, "w-res", secret=secret, running=held)
        assert welcome["t"] == "welcome" and welcome["secret"] == secret
        frames, code = until_closed(old)
        assert code == CONFLICT and [f["t"] for f in frames] == ["error"]
        # Its socket drops (a blip): the id still holds an attempt, so only the secret opens it.
        new.close()
        wait_until(
            lambda: [w["state"] for w in client.workers() if w["id"] == "w-res"] == ["offline"],
            what="w-res offline",
        )
        _refused(url, "w-res", running=held)
        ws, welcome = open_session(url, "w-res", secret=secret, running=held)
        assert welcome["t"] == "welcome"
        ws.send(report(outcomes=[{"task_id": task.id, "token": held[0][1], "status": "completed"}]))
        assert recv_kind(ws, "ack")["seq"] == 1
        done = client.wait(task.id, timeout_s=10)
        assert done.ok and done.attempts == 1
    ws.close()


def test_a_worker_resumes_after_a_master_restart_and_an_impostor_still_cannot(
    procs: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    master, url = procs.master("m1", None, data_dir=data)
    port = int(url.rsplit(":", 1)[1])
    worker = procs.worker("w1", url)
    with Client(url) as client:
        task = client.submit("sleep 2; echo survived")
        wait_until(lambda: client.get(task.id).status == "running", what="task running")
    master.kill9()
    _, url = procs.master("m1", port, data_dir=data)
    # The restarted master knows the secret's hash from its log: the impostor is refused...
    assert "held by another live instance" in _refused(url, "w1")
    with Client(url) as client:
        # ...and the real worker resumes its attempt with the secret it kept.
        done = client.wait(task.id, timeout_s=30)
        assert done.ok and done.attempts == 1 and done.worker_id == "w1"
        assert client.output(task.id)["stdout"] == "survived\n"
    assert "held by another" not in worker.log()
