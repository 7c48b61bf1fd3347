"""Commit latency: one write at a time, on 3 masters and on 1, no workers.

Sequential ``POST /api/v1/tasks`` with a tiny command (plain httpx, one kept-alive
connection), each answered only once its command is committed (fsynced on a majority) and
applied. Measured by the client around each request; p50/p99 after a warm-up. Target on 3
masters: p50 <= 2 ms.

Figures: ``p50_ms_3m`` (posting to the leader), ``p50_ms_3m_via_follower`` (posting to a
follower, which forwards to the leader), and ``p50_ms_1m`` for comparison. Each write is its own
log entry, so the figure is about fsync latency (leader's and, in parallel, a follower's) plus
one network round trip to the followers plus the HTTP and apply work.
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
    args = bench_args(__doc__ or BENCH)
    n_writes, budget_s = (60, BUDGET_S / 5) if args.quick else (500, BUDGET_S)

    def body() -> None:
        disk_figures(BENCH)
        with (
            LocalCluster(masters=3, profile_dir=args.profile, name="commit3") as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            leader = cluster.wait_leader()
            follower = next(i for i in cluster.alive_masters() if i != leader)
            cpu_before = cluster.stats()
            figures = measure(cluster.urls[leader], n_writes, budget_s)
            cpu_after = cluster.stats()
            report(figures, "_3m", target=True)
            for name, after in cpu_after.items():
                role = "leader" if name == f"master{leader + 1}" else "follower"
                spent = (after.cpu_s - cpu_before[name].cpu_s) * 1000
                figure(
                    BENCH,
                    f"{name}_{role}_cpu_ms_per_write_3m",
                    spent / (figures["writes"] + WARMUP),
                    fmt="{:.3f}",
                )
            via = measure(cluster.urls[follower], max(60, n_writes // 5), budget_s / 2)
            figure(BENCH, "p50_ms_3m_via_follower", via["p50_ms"], fmt="{:.2f}")
            figure(BENCH, "p99_ms_3m_via_follower", via["p99_ms"], fmt="{:.2f}")
            if args.keep_logs:
                print(cluster.logs())
        with (
            LocalCluster(masters=1, profile_dir=None, name="commit1") as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            report(measure(cluster.url, n_writes, budget_s), "_1m", target=False)

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
