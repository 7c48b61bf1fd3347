"""End to end on one master with real worker processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from agentflow import Client
from tests.e2e.procs import Processes, live_workers, pid_alive, wait_until


def test_seed_request_runs_echo_hello(procs: Processes) -> None:
    _, url = procs.master("master-1")
    procs.worker("worker-1", url.replace("127.0.0.1", "localhost"))
    wait_until(lambda: live_workers(url) == 1, what="worker registered")
    # The seed's exact request.
    response = httpx.post(
        url + "/api/v1/tasks",
        headers={"Content-Type": "application/json"},
        content='{"title": "Test Task", "description": "echo Hello"}',
    )
    assert response.status_code == 201
    task_id = response.json()["id"]
    with Client(url) as client:
        done = client.wait(task_id, timeout_s=20)
        assert done.status == "completed"
        assert done.exit_code == 0
        assert client.output(task_id)["stdout"] == "Hello\n"
        assert done.raw["title"] == "Test Task"


def test_one_slot_runs_later_urgent_before_earlier_low(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master()
    order = tmp_path / "order"
    with Client(url) as client:
        blocker = client.submit("sleep 0.3", title="blocker")
        lows = [client.submit(f"echo low{i} >> {order}", priority="low") for i in range(3)]
        urgent = client.submit(f"echo urgent >> {order}", priority="urgent")
        procs.worker("w1", url, "--slots", "1")
        for task in [blocker, *lows, urgent]:
            assert client.wait(task.id, timeout_s=20).ok
    assert order.read_text().split() == ["urgent", "low0", "low1", "low2"]


def test_timeout_kills_the_whole_process_tree(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; sh -c 'sleep 60' & echo $! >> {pids}; wait"
    with Client(url) as client:
        task = client.submit(script, timeout_s=1.0)
        done = client.wait(task.id, timeout_s=20)
    assert done.status == "timed_out"
    assert "timed out" in (done.reason or "")
    children = [int(p) for p in pids.read_text().split()]
    assert len(children) == 2
    wait_until(lambda: not any(pid_alive(p) for p in children), 5, "children killed")


def test_retries_until_success_with_every_attempt_kept(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    with Client(url) as client:
        task = client.submit(
            '[ "$AGENTFLOW_ATTEMPT" -ge 3 ] || exit 7', max_retries=5, retry_backoff_s=0.05
        )
        done = client.wait(task.id, timeout_s=20)
    assert done.status == "completed"
    history = done.raw["attempt_history"]
    assert [(a["status"], a["exit_code"]) for a in history] == [
        ("failed", 7),
        ("failed", 7),
        ("completed", 0),
    ]
    tokens = [a["fencing_token"] for a in history]
    assert tokens == sorted(tokens) and len(set(tokens)) == 3


def test_retries_exhausted_stay_failed(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    with Client(url) as client:
        task = client.submit("exit 4", max_retries=1, retry_backoff_s=0)
        done = client.wait(task.id, timeout_s=20)
    assert done.status == "failed"
    assert done.exit_code == 4
    assert [a["exit_code"] for a in done.raw["attempt_history"]] == [4, 4]


def test_cancel_running_sleep_kills_it(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    pidfile = tmp_path / "pid"
    with Client(url) as client:
        task = client.submit(f"sleep 60 & echo $! > {pidfile}; wait")
        wait_until(lambda: client.get(task.id).status == "running" and pidfile.exists())
        sleeper = int(pidfile.read_text())
        assert pid_alive(sleeper)
        assert client.cancel(task.id).status == "cancelled"
        wait_until(lambda: not pid_alive(sleeper), 10, "sleep killed")
        wait_until(lambda: client.workers()[0]["free_slots"] == client.workers()[0]["slots"])
        assert client.get(task.id).status == "cancelled"


def test_idempotent_submit_returns_the_first_task(procs: Processes) -> None:
    _, url = procs.master()
    body = {"command": "true", "idempotency_key": "build-42"}
    first = httpx.post(url + "/api/v1/tasks", json=body)
    second = httpx.post(url + "/api/v1/tasks", json=body)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["created"] is False
    assert len(httpx.get(url + "/api/v1/tasks").json()["tasks"]) == 1


def test_bad_input_gets_problem_json_and_changes_nothing(procs: Processes) -> None:
    _, url = procs.master()
    httpx.post(url + "/api/v1/tasks", json={"command": "true"})
    tasks_url = url + "/api/v1/tasks"
    json_header = {"content-type": "application/json"}
    cases = [
        (httpx.post(tasks_url, content=b"{not json", headers=json_header), 400),
        (httpx.post(tasks_url, json={"command": "true", "priority": "asap"}), 422),
        (httpx.post(tasks_url, json={"command": "   "}), 422),
        (httpx.post(tasks_url, json={"title": "no command"}), 422),
        (httpx.post(tasks_url, json={"command": "true", "colour": "red"}), 422),
        (httpx.post(tasks_url, content=b"x" * (10 << 20), headers=json_header), 413),
        (httpx.post(url + "/api/v1/tasks/batch", json={"tasks": []}), 422),
        (httpx.get(tasks_url + "/t-doesnotexist"), 404),
        (httpx.post(tasks_url + "/t-doesnotexist/cancel"), 404),
        (httpx.patch(tasks_url + "/t-doesnotexist", json={"priority": "high"}), 404),
        (httpx.get(url + "/api/v1/nothing-here"), 404),
        (httpx.delete(tasks_url), 405),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        assert problem["status"] == status and problem["title"] and problem["detail"]
    unknown = cases[4][0].json()
    assert unknown["errors"] == [{"field": "colour", "message": "unknown field"}]
    assert len(httpx.get(tasks_url).json()["tasks"]) == 1


def test_api_token_is_required_when_set(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--api-token", "s3cret")
    assert httpx.get(url + "/health").status_code == 200
    denied = httpx.get(url + "/api/v1/tasks")
    assert denied.status_code == 401
    assert denied.headers["content-type"] == "application/problem+json"
    assert (
        httpx.get(url + "/api/v1/tasks", headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    procs.worker("w1", url, "--api-token", "s3cret")
    with Client(url, token="s3cret") as client:
        task = client.submit("echo ok")
        assert client.wait(task.id, timeout_s=20).ok


def test_master_kill9_and_restart_loses_nothing_acknowledged(
    procs: Processes, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    master, url = procs.master("m1", None, data_dir=data)
    port = url.rsplit(":", 1)[1]
    with Client(url) as client:
        ids = client.submit_many({"command": f"echo {i}"} for i in range(200))
        single = client.submit("echo single")
    master.kill9()
    _, url2 = procs.master("m1", int(port), data_dir=data)
    with Client(url2) as client:
        found = {t.id for t in client.iter_tasks()}
        assert set(ids) | {single.id} <= found
        procs.worker("w1", url2, "--slots", "4")
        for task_id in [*ids[:5], single.id]:
            assert client.wait(task_id, timeout_s=30).ok
        assert client.output(ids[3])["stdout"] == "3\n"


def test_running_task_survives_master_restart(procs: Processes, tmp_path: Path) -> None:
    data = tmp_path / "data"
    master, url = procs.master("m1", None, data_dir=data)
    port = int(url.rsplit(":", 1)[1])
    procs.worker("w1", url)
    with Client(url) as client:
        task = client.submit("sleep 2; echo survived")
        wait_until(lambda: client.get(task.id).status == "running")
    master.kill9()
    _, url2 = procs.master("m1", port, data_dir=data)
    with Client(url2) as client:
        done = client.wait(task.id, timeout_s=30)
        assert done.ok, done
        assert done.attempts == 1  # the same attempt reported back: nothing re-ran
        assert client.output(task.id)["stdout"] == "survived\n"


def test_worker_kill9_reruns_its_task_on_another(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master("m1", None, "--worker-timeout", "2s", "--heartbeat-interval", "0.5s")
    marks = tmp_path / "ran-on"
    workers = {name: procs.worker(name, url) for name in ("w1", "w2")}
    wait_until(lambda: live_workers(url) == 2, what="two workers")
    with Client(url) as client:
        task = client.submit(f"echo $AGENTFLOW_WORKER_ID >> {marks}; sleep 3; echo done")
        wait_until(lambda: client.get(task.id).status == "running")
        first = client.get(task.id).worker_id
        assert first in workers
        workers[first].kill9()
        done = client.wait(task.id, timeout_s=30)
        assert done.ok
        assert done.worker_id != first
        assert done.attempts == 2
        history = done.raw["attempt_history"]
        assert history[0]["status"] == "lost"
        lost = [w for w in client.workers() if w["id"] == first]
        assert lost[0]["state"] == "lost"
    assert marks.read_text().split() == [first, done.worker_id]


def test_worker_sigterm_drains(procs: Processes) -> None:
    _, url = procs.master()
    worker = procs.worker("w1", url)
    with Client(url) as client:
        task = client.submit("sleep 1; echo finished")
        wait_until(lambda: client.get(task.id).status == "running")
        worker.popen.send_signal(15)
        time.sleep(0.2)
        later = client.submit("echo later")
        assert worker.popen.wait(timeout=20) == 0
        assert client.get(task.id).status == "completed"
        assert client.get(later.id).status == "queued"
        state = {w["id"]: w["state"] for w in client.workers()}
        assert state["w1"] in ("offline", "draining")


def test_cli_submit_wait_prints_output_and_exit_code(procs: Processes) -> None:
    import subprocess
    import sys

    _, url = procs.master()
    procs.worker("w1", url)
    cli = str(Path(sys.executable).parent / "agentflow")
    done = subprocess.run(
        [cli, "submit", "--master-url", url, "--wait", "--", "sh", "-c", "echo out; exit 5"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 5
    assert done.stdout == "out\n"
    bad = subprocess.run(
        [cli, "status", "t-nope", "--master-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 4
    assert bad.stderr.strip() == "error: no task t-nope"
    listing = subprocess.run(
        [cli, "tasks", "--master-url", url, "--status", "bogus"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert listing.returncode == 2
    assert len(listing.stderr.strip().splitlines()) == 1
    assert (
        json.loads(
            subprocess.run(
                [cli, "status", "--json", "--master-url", url, done.stdout and _first_task(url)],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        )["exit_code"]
        == 5
    )


def _first_task(url: str) -> str:
    task_id: str = httpx.get(url + "/api/v1/tasks").json()["tasks"][0]["id"]
    return task_id


def test_compacted_log_restarts_from_the_snapshot(procs: Processes, tmp_path: Path) -> None:
    data = tmp_path / "data"
    master, url = procs.master("m1", None, "--snapshot-every", "25", data_dir=data)
    port = int(url.rsplit(":", 1)[1])
    with Client(url) as client:
        ids = [client.submit(f"echo {i}").id for i in range(120)]
        status = client.request("GET", "/api/v1/cluster")
        assert status["snapshot_index"] >= 100  # snapshots were taken as the log grew
    master.kill9()
    _, url2 = procs.master("m1", port, "--snapshot-every", "25", data_dir=data)
    with Client(url2) as client:
        assert {t.id for t in client.iter_tasks()} == set(ids)
        procs.worker("w1", url2, "--slots", "4")
        assert all(client.wait(i, timeout_s=30).ok for i in ids[:10] + ids[-10:])
