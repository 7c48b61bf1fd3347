"""Commit latency: one write at a time, on 3 masters and on 1, no workers.

Sequential ``POST /api/v1/tasks`` with a tiny command (plain httpx, one kept-alive
connection), each answered only once its command is committed (fsynced on a majority) and
applied. Measured by the client around each request; p50/p99 after a warm-up. Target on 3
masters: p50 <= 2 ms.

Figures: ``p50_ms_3m`` (posting to the leader), ``p50_ms_3m_via_follower`` (posting to a
follower, which forwards to the leader), and ``p50_ms_1m`` for comparison. Each write is its own
log entry, so the figure is about fsync latency (leader's and, in parallel, a follower's) plus
one network round trip to the followers plus the HTTP and apply work.

``--store postgresql`` / ``--store mysql``: the masters on a throwaway SQL server on loopback
(``agentflow.testing.sqlserve``) instead: 2 masters sharing one database (``_2m``: to the
writer, and via the follower) and 1 master (``_1m``), each cluster on a fresh database. Each
write is then one append transaction (a commit on the database: its WAL or redo log flushed)
plus the HTTP and apply work; the writer's own timings (``log_*``: appends, mean append ms,
entries per append) are printed after each series, on either store.
"""

from __future__ import annotations

import statistics
import sys
import time

import httpx

from _cluster import (
    LocalCluster,
    bench_args,
    deadline_guard,
    disk_figures,
    figure,
    percentile,
    run_main,
)
from _stores import log_timings, store_server

BENCH = "commit_latency"
TARGET_P50_MS = 2.0
WARMUP = 30
TIME_LIMIT_S = 240.0
BUDGET_S = 60.0  # per series: stop early (and say so) rather than run unbounded when slow


def measure(url: str, n_writes: int, budget_s: float = BUDGET_S) -> dict[str, float]:
    latencies_ms: list[float] = []
    body = b'{"command":"true","group":"bench-latency"}'
    headers = {"content-type": "application/json"}
    give_up = time.monotonic() + budget_s
    with httpx.Client(timeout=10.0) as http:
        for i in range(WARMUP + n_writes):
            if time.monotonic() > give_up and len(latencies_ms) >= 30:
                break
            start = time.perf_counter()
            answer = http.post(url + "/api/v1/tasks", content=body, headers=headers)
            elapsed_ms = (time.perf_counter() - start) * 1000
            if answer.status_code != 201:
                raise RuntimeError(f"write answered {answer.status_code}: {answer.text[:200]}")
            if i >= WARMUP:
                latencies_ms.append(elapsed_ms)
    latencies_ms.sort()
    return {
        "writes": len(latencies_ms),
        "p50_ms": percentile(latencies_ms, 50),
        "p90_ms": percentile(latencies_ms, 90),
        "p99_ms": percentile(latencies_ms, 99),
        "mean_ms": statistics.fmean(latencies_ms),
        "max_ms": latencies_ms[-1],
    }


def report(figures: dict[str, float], suffix: str, target: bool) -> None:
    for key, value in figures.items():
        if key == "writes":
            figure(BENCH, f"{key}{suffix}", value, fmt="{:.0f}")
        elif key == "p50_ms" and target:
            figure(
                BENCH,
                f"{key}{suffix}",
                value,
                target=TARGET_P50_MS,
                higher_is_better=False,
                fmt="{:.2f}",
            )
        else:
            figure(BENCH, f"{key}{suffix}", value, fmt="{:.2f}")


def main() -> int:
    args = bench_args(__doc__ or BENCH, store=True)
    n_writes, budget_s = (60, BUDGET_S / 5) if args.quick else (500, BUDGET_S)
    many = 3 if args.store == "sqlite" else 2  # a SQL store: one writer, one following

    def body() -> None:
        disk_figures(BENCH)
        with store_server(args.store) as stores:
            print(f"{BENCH} store={stores.describe()}", flush=True)
            with (
                LocalCluster(
                    masters=many,
                    profile_dir=args.profile,
                    name=f"commit{many}",
                    store_url=stores.new_database(),
                ) as cluster,
                deadline_guard(TIME_LIMIT_S, BENCH),
            ):
                several(cluster, n_writes, budget_s, f"_{many}m", keep_logs=args.keep_logs)
            with (
                LocalCluster(
                    masters=1, profile_dir=None, name="commit1", store_url=stores.new_database()
                ) as cluster,
                deadline_guard(TIME_LIMIT_S, BENCH),
            ):
                report(measure(cluster.url, n_writes, budget_s), "_1m", target=False)
                report(log_timings(cluster.url, "log"), "_1m", target=False)

    return run_main(BENCH, body)


def several(
    cluster: LocalCluster, n_writes: int, budget_s: float, suffix: str, *, keep_logs: bool
) -> None:
    """The series on several masters: to the leader, its CPU, then via a follower."""
    leader = cluster.wait_leader()
    follower = next(i for i in cluster.alive_masters() if i != leader)
    cpu_before = cluster.stats()
    figures = measure(cluster.urls[leader], n_writes, budget_s)
    cpu_after = cluster.stats()
    report(figures, suffix, target=True)
    for name, after in cpu_after.items():
        role = "leader" if name == f"master{leader + 1}" else "follower"
        spent = (after.cpu_s - cpu_before[name].cpu_s) * 1000
        figure(
            BENCH,
            f"{name}_{role}_cpu_ms_per_write{suffix}",
            spent / (figures["writes"] + WARMUP),
            fmt="{:.3f}",
        )
    report(log_timings(cluster.urls[leader], "log"), suffix, target=False)
    via = measure(cluster.urls[follower], max(60, n_writes // 5), budget_s / 2)
    figure(BENCH, f"p50_ms{suffix}_via_follower", via["p50_ms"], fmt="{:.2f}")
    figure(BENCH, f"p99_ms{suffix}_via_follower", via["p99_ms"], fmt="{:.2f}")
    if keep_logs:
        print(cluster.logs())


if __name__ == "__main__":
    sys.exit(main())
