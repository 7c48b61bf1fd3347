"""Locks end to end: real masters, workers and contending processes on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from agentflow.client import AsyncClient, Client
from agentflow.errors import ConflictError, StaleTokenError, TimeoutExpiredError
from tests.e2e.procs import BIN, Processes, live_workers, wait_until

HOLDER = Path(__file__).with_name("lock_holder.py")


def holders(url: str, name: str) -> list[dict[str, object]]:
    lock = httpx.get(f"{url}/api/v1/locks/{name}", timeout=5)
    return lock.json()["holders"] if lock.status_code == 200 else []


def _fence_free(shared: Path) -> bool:
    """Whether nobody holds the fence's flock (a holder stopped inside an append would)."""
    with open(shared.with_name(shared.name + ".fence"), "a+b") as fence:
        try:
            fcntl.flock(fence, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fence, fcntl.LOCK_UN)
        return True


def _pause_mid_write(shared: Path) -> tuple[int, int]:
    """SIGSTOP the holder whose ``begin`` is the file's last line; its pid and token."""
    deadline = time.monotonic() + 60.0  # contenders start slowly on a loaded machine
    while time.monotonic() < deadline:
        lines = shared.read_text().splitlines() if shared.exists() else []
        if lines and lines[-1].startswith("begin"):
            _, token, pid = lines[-1].split()
            os.kill(int(pid), signal.SIGSTOP)
            if shared.read_text().splitlines()[-1] == lines[-1] and _fence_free(shared):
                return int(pid), int(token)
            os.kill(int(pid), signal.SIGCONT)  # it went on writing: try again
        time.sleep(0.01)
    raise AssertionError("never caught a holder between its writes")


def test_contenders_never_overlap_and_a_paused_holder_never_writes_stale(
    procs: Processes, tmp_path: Path
) -> None:
    _, url = procs.master()
    shared = tmp_path / "shared.log"
    contenders = [
        subprocess.Popen(
            [sys.executable, str(HOLDER), url, "file", str(shared), "6", "1.0"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(6)
    ]
    try:
        # Pause a holder between its two appends, well past its TTL, while the others go on.
        paused, paused_token = _pause_mid_write(shared)

        def newer_write() -> bool:
            lines = shared.read_text().splitlines() if shared.exists() else []
            return any(int(line.split()[1]) > paused_token for line in lines)

        wait_until(newer_write, timeout_s=20, what="a newer holder writing")
        os.kill(paused, signal.SIGCONT)
        for proc in contenders:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in contenders:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)
                proc.kill()

    lines = [line.split() for line in shared.read_text().splitlines()]
    tokens = [int(token) for _, token, _ in lines]
    assert tokens == sorted(tokens), "a stale token wrote after a newer one"
    # Exclusive: every begin is followed by its own end before anyone else writes,
    # except the paused holder's, whose end was refused.
    refused = (tmp_path / "shared.log.refused").read_text().splitlines()
    assert refused == [f"end {paused_token} {paused}"]
    assert lines.count(["begin", str(paused_token), str(paused)]) == 1
    pairs = [line for line in lines if int(line[1]) != paused_token]
    for begin, end in zip(pairs[::2], pairs[1::2], strict=True):
        assert (begin[0], end[0]) == ("begin", "end") and begin[1:] == end[1:], (begin, end)
    assert len(pairs) == 2 * (6 * 6 - 1)
    with Client(url) as client:
        kinds = [e["kind"] for e in client.lock_info("file")["history"]]
    assert "expired" in kinds  # the paused holder's lease ran out; it did not release


def test_a_task_holding_a_lock_loses_it_when_its_worker_is_lost(
    procs: Processes, tmp_path: Path
) -> None:
    _, url = procs.master("m1", None, "--worker-timeout", "2s", "--heartbeat-interval", "0.5s")
    worker = procs.worker("w1", url)
    wait_until(lambda: live_workers(url) == 1, what="a worker")
    pid_file = tmp_path / "task.pid"
    script = (
        "import os, time\n"
        "from agentflow import Client\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "with Client() as c, c.lock('job', ttl_s=60) as lease:\n"
        "    time.sleep(30)\n"
    )
    with Client(url) as client:
        task = client.submit(args=[sys.executable, "-c", script])
        wait_until(lambda: holders(url, "job"), timeout_s=20, what="the task holding the lock")
        token = client.get(task.id).raw["fencing_token"]
        assert holders(url, "job")[0]["session"] == f"task:{task.id}:{token}"
        worker.kill9()
        os.kill(int(pid_file.read_text()), signal.SIGKILL)  # the orphaned attempt
        lost_at = time.monotonic()
        wait_until(lambda: not holders(url, "job"), timeout_s=15, what="the lock released")
        assert time.monotonic() - lost_at < 30  # the worker's loss, not the 60 s TTL, ended it
        history = client.lock_info("job")["history"]
        assert [e["kind"] for e in history][-1] == "expired"
        assert client.get(task.id).status == "queued"  # requeued, to run again elsewhere


def test_tokens_keep_rising_across_a_master_restart(procs: Processes, tmp_path: Path) -> None:
    master, url = procs.master("m1", None, "--snapshot-every", "5")
    with Client(url) as client:
        first = client.request(
            "POST", "/api/v1/locks/x/acquire", json={"session": "a", "ttl_s": 30}
        )
        for i in range(8):  # enough entries for a snapshot, then some in the log only
            client.request("POST", f"/api/v1/locks/y{i}/acquire", json={"session": "b"})
    master.kill9()
    if procs.store is None:  # (a master on a SQL store keeps no state.db)
        # The image in state.db carries the lock table, also as indexed tables for operators.
        with contextlib.closing(sqlite3.connect(tmp_path / "m1-data" / "state.db")) as db:
            rows = db.execute("SELECT session, token FROM lock_grants WHERE name = 'x'").fetchall()
        assert rows == [("a", first["token"])]
    _, url = procs.master("m1", int(url.rsplit(":", 1)[1]), data_dir=tmp_path / "m1-data")
    with Client(url) as client:
        (held,) = holders(url, "x")
        assert held["token"] == first["token"] and held["session"] == "a"
        assert float(held["expires_in_s"]) > 25  # re-armed in full by the restarted leader
        with pytest.raises(ConflictError):
            client.request("POST", "/api/v1/locks/x/acquire", json={"session": "c"})
        body = {"session": "a", "token": first["token"]}
        client.request("POST", "/api/v1/locks/x/release", json=body)
        again = client.request("POST", "/api/v1/locks/x/acquire", json={"session": "c"})
        assert again["token"] > first["token"]


def test_tokens_keep_rising_and_leases_survive_a_leader_kill(procs: Processes) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    with Client(cluster.urls) as client, client.lock("deploy", ttl_s=6) as lease:
        cluster.kill9(leader)
        survivors = [n for n in cluster.masters if n != leader]
        cluster.leader(among=survivors)
        time.sleep(7)  # longer than the TTL: renewals must have reached the new leader
        assert not lease.lost
        (held,) = client.lock_info("deploy")["holders"]
        assert held["token"] == lease.token
        token = lease.token
    with Client(cluster.urls) as client, client.lock("deploy", ttl_s=3) as again:
        assert again.token > token


def test_api_refuses_deadlocks_times_out_waits_and_rejects_bad_input(procs: Processes) -> None:
    _, url = procs.master()
    with Client(url) as client:
        post = client.request
        post("POST", "/api/v1/locks/x/acquire", json={"session": "A"})
        post("POST", "/api/v1/locks/y/acquire", json={"session": "B"})
        with pytest.raises(TimeoutExpiredError):
            post("POST", "/api/v1/locks/y/acquire", json={"session": "A", "wait_s": 0.3})
        # A now waits for y (held by B) in the background; B asking for x closes the cycle.
        waiting = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import httpx,sys; r=httpx.post(sys.argv[1], json={'session':'A','wait_s':20},"
                " timeout=30); print(r.status_code, r.json().get('token'))",
                f"{url}/api/v1/locks/y/acquire",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        wait_until(lambda: client.lock_info("y")["waiters"], what="A waiting for y")
        refused = httpx.post(
            f"{url}/api/v1/locks/x/acquire", json={"session": "B", "wait_s": 5}, timeout=10
        )
        assert refused.status_code == 409
        problem = refused.json()
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert problem["cycle"] == ["B", "A"] and problem["locks"] == ["x", "y"]
        y_token = client.lock_info("y")["holders"][0]["token"]
        post("POST", "/api/v1/locks/y/release", json={"session": "B", "token": y_token})
        out, _ = waiting.communicate(timeout=20)
        status, token = out.split()
        assert status == "200" and int(token) > y_token
        with pytest.raises(StaleTokenError):
            post("POST", "/api/v1/locks/y/release", json={"session": "B", "token": y_token})
    for body, status in (
        ({"session": "s", "ttl_s": 0}, 422),
        ({"session": "s", "mode": "sideways"}, 422),
        ({"session": "s", "wait_s": 301}, 422),
        ({"task_id": "t-1"}, 422),
        ({"session": "s", "surprise": 1}, 422),
    ):
        r = httpx.post(f"{url}/api/v1/locks/z/acquire", json=body, timeout=5)
        assert r.status_code == status, (body, r.text)
    assert httpx.get(f"{url}/api/v1/locks/never-used", timeout=5).status_code == 404
    metrics = httpx.get(f"{url}/metrics", timeout=5).text
    assert "agentflow_locks_held 2.0" in metrics
    assert 'agentflow_lock_events_total{kind="granted"} 3.0' in metrics
    json_type = {"Content-Type": "application/json"}
    bad = httpx.post(f"{url}/api/v1/locks/z/acquire", content=b"{", headers=json_type, timeout=5)
    assert bad.status_code == 400
    assert [lk["name"] for lk in httpx.get(f"{url}/api/v1/locks", timeout=5).json()["locks"]] == [
        "x",
        "y",
    ]


def test_cli_lock_run_passes_the_token_and_stops_the_command_when_the_lease_is_lost(
    procs: Processes,
) -> None:
    _, url = procs.master()
    env = {**os.environ, "AGENTFLOW_URL": url}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "agentflow"), "lock", *args]
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=30, check=False
        )

    ok = cli("run", "build", "--", "sh", "-c", "echo $AGENTFLOW_LOCK_TOKEN; exit 3")
    assert ok.returncode == 3 and ok.stdout.strip().isdigit()
    assert holders(url, "build") == []  # released on exit
    running = subprocess.Popen(
        [str(BIN / "agentflow"), "lock", "run", "build", "--ttl", "1s", "--", "sleep", "30"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: holders(url, "build"), what="lock run holding the lock")
    forced = cli("force-release", "build", "--reason", "test")
    assert forced.returncode == 0, forced.stderr
    _, err = running.communicate(timeout=30)
    assert running.returncode == 8
    assert "lost" in err
    assert json.loads(cli("list", "--json").stdout) == []
    assert cli("acquire", "build", "--ttl", "30s").returncode == 0
    held = cli("acquire", "build")
    assert held.returncode == 5 and held.stderr.startswith("error: lock build is held")


def test_contenders_stay_exclusive_and_fenced_across_a_leader_kill(
    procs: Processes, tmp_path: Path
) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    shared = tmp_path / "shared.log"
    contenders = [
        subprocess.Popen(
            [sys.executable, str(HOLDER), cluster.urls, "file", str(shared), "8", "2.0"],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(4)
    ]
    try:
        wait_until(
            lambda: shared.exists() and len(shared.read_text().splitlines()) >= 8,
            timeout_s=30,
            what="a few rounds written",
        )
        cluster.kill9(leader)
        for proc in contenders:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in contenders:
            if proc.poll() is None:
                proc.kill()
    lines = [line.split() for line in shared.read_text().splitlines()]
    tokens = [int(token) for _, token, _ in lines]
    assert tokens == sorted(tokens), "a stale token wrote after a newer one"
    refused_path = tmp_path / "shared.log.refused"
    refused = refused_path.read_text().splitlines() if refused_path.exists() else []
    stale = {int(line.split()[1]) for line in refused}
    pairs = [line for line in lines if int(line[1]) not in stale]
    for begin, end in zip(pairs[::2], pairs[1::2], strict=True):
        assert (begin[0], end[0]) == ("begin", "end") and begin[1:] == end[1:], (begin, end)
    assert len(pairs) + sum(1 for line in lines if int(line[1]) in stale) == len(lines)
    assert len({int(b[1]) for b in pairs}) == len(pairs) // 2  # one grant per round


def test_async_leases_take_and_renew_over_the_lock_socket(procs: Processes) -> None:
    _, url = procs.master()

    async def scenario() -> list[int]:
        async with AsyncClient(url) as client:
            tokens: list[int] = []

            async def hold() -> None:
                async with client.lock("shared", ttl_s=0.6, wait_s=20) as lease:
                    tokens.append(lease.token)
                    await asyncio.sleep(1.0)  # longer than the TTL: renewals keep it
                    assert not lease.lost and lease.renewals >= 2

            await asyncio.gather(hold(), hold(), hold())
            assert client.lock_socket.connected  # it all went over the socket
            return tokens

    tokens = asyncio.run(scenario())
    assert tokens == sorted(tokens) and len(set(tokens)) == 3
    with Client(url) as client:
        kinds = [e["kind"] for e in client.lock_info("shared")["history"]]
    assert kinds.count("granted") == 3 and kinds.count("released") == 3
    assert "expired" not in kinds


def test_a_lease_granted_after_a_long_wait_is_confirmed_not_lost(procs: Processes) -> None:
    _, url = procs.master()
    with Client(url) as client:
        first = client.request("POST", "/api/v1/locks/q/acquire", json={"session": "first"})
        release = threading.Timer(
            2.0,
            client.request,
            args=("POST", "/api/v1/locks/q/release"),
            kwargs={"json": {"session": "first", "token": first["token"]}},
        )
        release.start()
        with client.lock("q", ttl_s=1.0, wait_s=10) as lease:  # granted after 2 s, a TTL of 1 s
            assert not lease.lost
            time.sleep(1.5)
            assert not lease.lost and lease.renewals >= 2
        release.join()
