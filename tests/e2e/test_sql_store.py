"""Masters on a SQL store, end to end, on real PostgreSQL and MariaDB servers (one of each per
module, a fresh database per test): two masters and a worker on one database run tasks and a
workflow submitted to either master; kill -9 of the writer under a stream of submits (the other
master leads, every acknowledged task completes once, the killed master comes back and
converges); the database restarted, cleanly and by kill -9, under the same stream (writes are
refused with a 503 problem while it is down, no master exits, nothing acknowledged is lost, and
the history tables end up with every finished task);
every master stopped and started again: every acknowledged task and its status is there.

Each submit carries an idempotency key and is retried with it until a master acknowledges it,
so "none lost, none twice" is exactly: one task per key, and no other task.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentflow import Client
from agentflow.cluster.sql import parse_store
from agentflow.cluster.sql.historystore import HistoryStore
from agentflow.state import TaskStatus
from agentflow.state.taskrows import unpack_task
from agentflow.testing.sqlserve import MariaDbServer, PostgresServer, unavailable
from tests.e2e.procs import Cluster, Processes, live_workers, wait_until
from tests.e2e.test_cluster import stale_tasks

Server = PostgresServer | MariaDbServer
PROBLEM_JSON = "application/problem+json"
WAIT_S = 60.0  # generous deadlines on observable conditions; no timed assertion
_names = itertools.count(1)


@pytest.fixture(scope="module", params=["postgresql", "mysql"])
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    why = unavailable(request.param)
    if why is not None:
        pytest.skip(why)
    # Not pytest's base temp (0700): as root the server runs as postgres / mysql.
    root = Path(tempfile.mkdtemp(prefix=f"agentflow-e2e-sql-{request.param}-"))
    root.chmod(0o711)
    made: Server = PostgresServer(root) if request.param == "postgresql" else MariaDbServer(root)
    try:
        made.start()
        yield made
    finally:
        made.kill9()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(server: Server, procs: Processes) -> Cluster:
    """Two masters, m1 and m2, on a fresh database of ``server``; a snapshot (and the log
    compacted behind it) every 50 entries, so restarts and takeovers load snapshots too."""
    server.start()  # a no-op unless an earlier test left it stopped
    procs.use_store(server.create_database(f"sqle2e{next(_names)}"))
    return procs.cluster(2, "--log-level", "info", "--snapshot-every", "50")


class Submitter(threading.Thread):
    """Submits ``key-0``, ``key-1``, ... round robin to the masters; each key is retried (same
    key, next master) until one acknowledges it. Records each key's task id and when each
    acknowledged request was sent and answered."""

    def __init__(self, urls: list[str], prefix: str = "key") -> None:
        super().__init__(name="submitter", daemon=True)
        self.urls = urls
        self.prefix = prefix
        self.acked: dict[str, str] = {}
        self.times: list[tuple[float, float]] = []  # (sent, acknowledged), monotonic
        self.refusals: list[httpx.Response] = []
        self._halt = threading.Event()

    def run(self) -> None:
        turn = itertools.cycle(self.urls)
        with httpx.Client(timeout=10.0) as http:
            for n in itertools.count():
                if self._halt.is_set():
                    return
                key = f"{self.prefix}-{n}"
                while key not in self.acked:  # finish the key in hand, even when halted
                    sent = time.monotonic()
                    try:
                        response = http.post(
                            next(turn) + "/api/v1/tasks",
                            json={"command": "true", "idempotency_key": key},
                        )
                    except httpx.HTTPError:
                        time.sleep(0.02)
                        continue
                    if response.status_code in (200, 201):
                        self.acked[key] = response.json()["id"]
                        self.times.append((sent, time.monotonic()))
                    else:
                        self.refusals.append(response)
                        time.sleep(0.02)

    def more(self, count: int = 20) -> None:
        """Wait until ``count`` more keys than now are acknowledged."""
        target = len(self.acked) + count
        wait_until(lambda: len(self.acked) >= target, WAIT_S, f"{target} acknowledged submits")

    def first_ack_after(self, moment: float) -> float:
        """Seconds from ``moment`` to the first acknowledgement of a request sent after it."""
        return min(acked for sent, acked in self.times if sent >= moment) - moment

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=WAIT_S)
        assert not self.is_alive()


def all_completed(url: str, ids: set[str]) -> bool:
    tasks = stale_tasks(url)
    return ids <= tasks.keys() and all(tasks[i]["status"] == "completed" for i in ids)


def check_acked(cluster: Cluster, submitter: Submitter) -> dict[str, dict[str, Any]]:
    """Every acknowledged task completed on every master, one task per key and no other."""
    ids = set(submitter.acked.values())
    assert len(ids) == len(submitter.acked), "two keys acknowledged with one task id"
    for name in cluster.masters:
        wait_until(lambda n=name: all_completed(cluster.url(n), ids), WAIT_S, f"done on {name}")
    cluster.wait_converged()
    tasks = stale_tasks(cluster.url("m1"))
    assert tasks.keys() == ids, "a task beyond the acknowledged ones (a duplicate)"
    keys = {t["idempotency_key"] for t in tasks.values()}
    assert keys == submitter.acked.keys()
    return tasks


def start_worker(procs: Processes, cluster: Cluster) -> None:
    procs.worker("w1", cluster.urls, "--slots", "4")
    wait_until(lambda: live_workers(cluster.url("m1")) == 1, WAIT_S, "the worker registered")


def test_two_masters_on_one_database_run_tasks_and_a_workflow(
    procs: Processes, cluster: Cluster
) -> None:
    leader = cluster.leader()
    status = cluster.status(leader)
    assert status is not None and ":***@" in status["store"]
    assert status["store"].rsplit("/", 1)[1] == procs.store_url("cluster").rsplit("/", 1)[1]
    start_worker(procs, cluster)
    ids = []
    for name in ("m1", "m2", "m1", "m2"):  # the follower forwards its writes
        response = httpx.post(
            cluster.url(name) + "/api/v1/tasks", json={"command": f"echo from {name}"}
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    with Client(cluster.url("m2")) as client:
        for task_id in ids:
            assert client.wait(task_id, timeout_s=WAIT_S).ok
        assert client.output(ids[1])["stdout"] == "from m2\n"
        view = client.submit_workflow(
            {
                "name": "on-sql",
                "tasks": [
                    {"id": "a", "command": "echo a"},
                    {"id": "b", "command": "echo b", "dependencies": ["a"]},
                    {"id": "c", "command": "echo c", "dependencies": ["a"]},
                    {"id": "d", "command": "echo d", "dependencies": ["b", "c"]},
                ],
            }
        )
        done = client.wait_workflow(view["id"], timeout_s=WAIT_S)
        assert done["status"] == "completed", done
    cluster.wait_converged()


def test_writer_killed_the_other_leads_and_nothing_acknowledged_is_lost(
    procs: Processes, cluster: Cluster
) -> None:
    start_worker(procs, cluster)
    submitter = Submitter([m.url for m in cluster.masters.values()])
    submitter.start()
    submitter.more()
    writer = cluster.leader()
    killed_at = time.monotonic()
    cluster.kill9(writer)
    submitter.more()
    other = cluster.leader()
    assert other != writer
    print(f"\nfailover ({procs.store}): kill -9 -> first accepted write "
          f"{submitter.first_ack_after(killed_at):.2f} s")  # fmt: skip
    submitter.more()
    cluster.start(writer)  # it comes back as a follower, tails the log and converges
    submitter.more()
    submitter.stop()
    status = cluster.status(writer)
    assert status is not None and status["role"] == "follower"
    tasks = check_acked(cluster, submitter)
    assert len(tasks) == len(submitter.acked) >= 80


def _refused_while_down(cluster: Cluster) -> None:
    """A write to either master is answered 503 with a problem while the database is down."""
    seen: set[str] = set()

    def refused() -> bool:
        for name in cluster.masters:
            try:
                response = httpx.post(
                    cluster.url(name) + "/api/v1/tasks",
                    json={"command": "true", "idempotency_key": f"probe-{name}"},
                    timeout=10.0,
                )
            except httpx.HTTPError:
                continue
            assert response.status_code not in (200, 201), "a write acknowledged, database down"
            if response.status_code == 503:
                assert response.headers["content-type"] == PROBLEM_JSON, response.text
                seen.add(name)
        return seen == set(cluster.masters)

    wait_until(refused, WAIT_S, "503 from every master while the database is down")


def test_database_restarts_are_ridden_out(
    procs: Processes, cluster: Cluster, server: Server
) -> None:
    start_worker(procs, cluster)
    submitter = Submitter([m.url for m in cluster.masters.values()])
    submitter.start()
    submitter.more()
    what = {"stop": "back up", "restart": "restart begun", "kill9": "kill -9"}
    for how in ("stop", "restart", "kill9"):
        if how == "stop":  # down long enough to look at the masters meanwhile
            server.stop()
            _refused_while_down(cluster)
            assert all(m.alive() for m in cluster.masters.values())
            down_at = time.monotonic()  # from its start again
            server.start()
        elif how == "restart":
            down_at = time.monotonic()
            server.restart()
        else:
            down_at = time.monotonic()
            server.kill9()
            server.start()
        submitter.more()
        print(f"\ndatabase {how} ({procs.store}): {what[how]} -> first accepted write "
              f"{submitter.first_ack_after(down_at):.2f} s")  # fmt: skip
        assert all(m.alive() for m in cluster.masters.values()), how
    submitter.stop()
    check_acked(cluster, submitter)
    assert all(m.alive() for m in cluster.masters.values())
    history_written(procs, set(submitter.acked.values()))


def history_written(procs: Processes, ids: set[str]) -> None:
    """The history tables came to hold every one of ``ids`` finished: the writer kept what the
    database did not take while it was down and wrote it after."""
    url = parse_store(procs.store_url("cluster"))
    assert url is not None
    store = HistoryStore(url)
    try:

        def unwritten() -> list[str]:
            rows = {i: store.task_row(i) for i in ids}
            return [i for i, row in rows.items() if row is None or unpack_task(row).status
                    is not TaskStatus.COMPLETED]  # fmt: skip

        wait_until(lambda: not unwritten(), WAIT_S, "every finished task in the history tables")
    finally:
        store.close()


def test_every_master_restarted_finds_every_acknowledged_task(
    procs: Processes, cluster: Cluster
) -> None:
    start_worker(procs, cluster)
    submitter = Submitter([m.url for m in cluster.masters.values()])
    submitter.start()
    submitter.more(60)
    submitter.stop()
    check_acked(cluster, submitter)
    procs.procs[-1].terminate()  # the worker: what is submitted now stays queued
    with Client(cluster.urls) as client:
        queued = client.submit_many({"command": f"echo q{i}"} for i in range(20))
    cluster.wait_converged()
    before = stale_tasks(cluster.url("m1"))
    assert [before[i]["status"] for i in queued] == ["queued"] * 20
    for how in ("sigterm", "kill9"):
        for name in cluster.masters:
            if how == "sigterm":
                cluster.terminate(name)
            else:
                cluster.kill9(name)
        for name, master in cluster.masters.items():  # nothing of it kept on the master's disk
            master.data_dir = procs.root / f"{name}-data-after-{how}"
            cluster.start(name)
        cluster.leader()
        cluster.wait_converged()
        for name in cluster.masters:
            assert stale_tasks(cluster.url(name)) == before, (how, name)
