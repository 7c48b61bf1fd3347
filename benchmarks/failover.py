"""Failover: SIGKILL the leader of 3 masters, N times; how long until writes are accepted again.

Each round kills the current leader with SIGKILL (no shutdown, no goodbye to its peers), then
one thread per surviving master posts ``POST /api/v1/tasks`` (a tiny task in a group with no
workers) in a tight loop with short per-request timeouts. The clock runs from just before the
kill until the first ``201`` through either survivor: ``write_s`` (target: median <= 1.5 s,
max <= 3 s). Another thread polls ``GET /api/v1/cluster`` on the survivors and stamps the first
moment one of them names a different, live leader: ``leader_known_s``. Between rounds the killed
master is restarted with the same id, ports and data directory, and the round waits until it
has caught up and every master names the same leader.

Two runs: ``idle`` (nothing else writes: the default figures), and ``_load`` (a background SDK
client submits tasks one after another through all three masters the whole time, as users
would; ``load_max_gap_s`` is the longest the client saw between two acknowledged writes,
``load_errors`` the submits that failed after the SDK's retries).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx

from _cluster import LocalCluster, bench_args, deadline_guard, disk_figures, figure, run_main

BENCH = "failover"
TARGET_MEDIAN_S = 1.5
TARGET_MAX_S = 3.0
ROUND_LIMIT_S = 20.0  # a round with no write accepted by then counts as failed
TIME_LIMIT_S = 400.0
POLL_PAUSE_S = 0.002  # between attempts that were answered at once (503, refused)
PROBE = {"command": "true", "group": "bench-failover"}  # no worker ever takes these


@dataclass
class Round:
    killed: str
    write_s: float = float("nan")
    leader_known_s: float = float("nan")
    new_leader: str | None = None
    answers: dict[str, int] = field(default_factory=dict)  # status / error kind -> count


def _count(answers: dict[str, int], key: str, lock: threading.Lock) -> None:
    with lock:
        answers[key] = answers.get(key, 0) + 1


def _poll_writes(
    url: str, start: float, done: threading.Event, result: Round, lock: threading.Lock
) -> None:
    timeout = httpx.Timeout(0.5, connect=0.2)
    with httpx.Client(timeout=timeout) as http:
        while not done.is_set():
            try:
                answer = http.post(url + "/api/v1/tasks", json=PROBE)
            except httpx.HTTPError as exc:
                _count(result.answers, type(exc).__name__, lock)
                time.sleep(POLL_PAUSE_S)
                continue
            _count(result.answers, str(answer.status_code), lock)
            if answer.status_code == 201:
                elapsed = time.perf_counter() - start
                with lock:
                    if not done.is_set():
                        result.write_s = elapsed
                        done.set()
                return
            time.sleep(POLL_PAUSE_S)


def _poll_leader(
    cluster: LocalCluster,
    survivors: list[int],
    killed_id: str,
    start: float,
    done: threading.Event,
    result: Round,
) -> None:
    live_ids = {cluster.node_ids[i] for i in survivors}
    with httpx.Client(timeout=httpx.Timeout(0.5, connect=0.2)) as http:
        while not done.is_set() and time.perf_counter() - start < ROUND_LIMIT_S:
            for i in survivors:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    status = http.get(cluster.urls[i] + "/api/v1/cluster").json()
                    leader = status.get("leader_id")
                    if leader and leader != killed_id and leader in live_ids:
                        result.leader_known_s = time.perf_counter() - start
                        result.new_leader = leader
                        return
            time.sleep(POLL_PAUSE_S)


def one_round(cluster: LocalCluster) -> Round:
    leader = cluster.wait_leader()
    survivors = [i for i in cluster.alive_masters() if i != leader]
    result = Round(killed=cluster.node_ids[leader])
    done = threading.Event()
    lock = threading.Lock()
    start = time.perf_counter()
    cluster.kill_master(leader)
    threads = [
        threading.Thread(
            target=_poll_writes, args=(cluster.urls[i], start, done, result, lock), daemon=True
        )
        for i in survivors
    ]
    threads.append(
        threading.Thread(
            target=_poll_leader,
            args=(cluster, survivors, result.killed, start, done, result),
            daemon=True,
        )
    )
    for t in threads:
        t.start()
    done.wait(ROUND_LIMIT_S)
    done.set()
    for t in threads:
        t.join(timeout=2.0)
    # Put the killed master back and let it catch up before the next round.
    cluster.restart_master(leader)
    cluster.wait_caught_up(leader)
    cluster.wait_writable()
    return result


class _Load:
    """A background SDK client submitting tasks one after another, through all masters."""

    def __init__(self, cluster: LocalCluster) -> None:
        from agentflow import Client

        # The SDK's default retries (a 15 s budget, backing off to 0.5 s), as a user's client has.
        self.client = Client(cluster.client_url, timeout_s=5.0)
        self.stop = threading.Event()
        self.ok = 0
        self.errors = 0
        self.max_gap_s = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = time.perf_counter()
        while not self.stop.is_set():
            try:
                self.client.submit("true", group="bench-failover-load")
            except Exception:  # the SDK gave up after its retries: count it, keep going
                self.errors += 1
                continue
            now = time.perf_counter()
            self.max_gap_s = max(self.max_gap_s, now - last)
            last = now
            self.ok += 1

    def __enter__(self) -> _Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10.0)
        self.client.close()


def run(cluster: LocalCluster, rounds: int) -> list[Round]:
    out = []
    for _ in range(rounds):
        out.append(one_round(cluster))
    return out


def report(results: list[Round], suffix: str = "") -> None:
    writes = sorted(r.write_s for r in results if r.write_s == r.write_s)
    known = sorted(r.leader_known_s for r in results if r.leader_known_s == r.leader_known_s)
    failed = len(results) - len(writes)
    if writes:
        figure(
            BENCH,
            f"write_median_s{suffix}",
            statistics.median(writes),
            target=TARGET_MEDIAN_S,
            higher_is_better=False,
            fmt="{:.3f}",
        )
        figure(
            BENCH,
            f"write_max_s{suffix}",
            max(writes) if not failed else float("inf"),
            target=TARGET_MAX_S,
            higher_is_better=False,
            fmt="{:.3f}",
        )
        figure(BENCH, f"write_min_s{suffix}", min(writes), fmt="{:.3f}")
    if known:
        figure(BENCH, f"leader_known_median_s{suffix}", statistics.median(known), fmt="{:.3f}")
        figure(BENCH, f"leader_known_max_s{suffix}", max(known), fmt="{:.3f}")
    figure(BENCH, f"rounds{suffix}", len(results), fmt="{:.0f}")
    figure(BENCH, f"rounds_failed{suffix}", failed, fmt="{:.0f}")
    # One line per round, for the record (not figures: no '=' after the bench name's first word).
    for n, r in enumerate(results, 1):
        answers = ",".join(f"{k}:{v}" for k, v in sorted(r.answers.items()))
        print(
            f"# {BENCH}{suffix} round {n}: killed {r.killed} -> {r.new_leader} "
            f"write {r.write_s:.3f}s leader_known {r.leader_known_s:.3f}s answers {answers}",
            flush=True,
        )


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    rounds, load_rounds = (3, 2) if args.quick else (20, 10)

    def body() -> None:
        disk_figures(BENCH)
        with (
            LocalCluster(masters=3, profile_dir=args.profile, name="failover") as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            report(run(cluster, rounds))
            with _Load(cluster) as load:
                results = run(cluster, load_rounds)
            report(results, "_load")
            figure(BENCH, "load_writes_ok", load.ok, fmt="{:.0f}")
            figure(BENCH, "load_errors", load.errors, fmt="{:.0f}")
            figure(BENCH, "load_max_gap_s", load.max_gap_s, fmt="{:.3f}")
            if args.keep_logs:
                print(cluster.logs())

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
