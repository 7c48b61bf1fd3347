"""Round trip: N sequential ``client.submit("true")`` + ``client.wait(id)``, one at a time.

Latency percentiles in milliseconds, measured by the client around the two calls. Target:
p50 <= 3 ms. The master's own timestamps split each trip into stages (created -> assigned ->
started -> finished, stamped when each command was proposed), printed as medians.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import datetime
from typing import Any

from _cluster import (
    LocalCluster,
    bench_args,
    deadline_guard,
    figure,
    masters_suffix,
    percentile,
    run_main,
)

BENCH = "round_trip"
TARGET_P50_MS = 3.0
TIME_LIMIT_S = 180.0
BUDGET_S = 120.0  # stop early (and say so) rather than run unbounded when trips are slow
WARMUP = 5


def _ms(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000 if iso else float("nan")


def stages(raw: Any) -> dict[str, float]:
    """Milliseconds between the master's stamps of one finished task."""
    attempt = raw["attempt_history"][-1]
    created, assigned = _ms(raw["created_at"]), _ms(attempt["assigned_at"])
    started, done = _ms(attempt["started_at"]), _ms(attempt["finished_at"])
    return {
        "created_to_assigned_ms": assigned - created,
        "assigned_to_started_ms": started - assigned,
        "started_to_finished_ms": done - started,
    }


def run(cluster: LocalCluster, n_trips: int, budget_s: float = BUDGET_S) -> dict[str, float]:
    """``n_trips`` measured trips after a warm-up, or as many as fit in ``budget_s``."""
    client = cluster.client()
    latencies_ms: list[float] = []
    parts: dict[str, list[float]] = {}
    give_up = time.monotonic() + budget_s
    try:
        for i in range(WARMUP + n_trips):
            if time.monotonic() > give_up and len(latencies_ms) >= 3:
                break
            start = time.perf_counter()
            task = client.submit("true")
            done = client.wait(task.id, timeout_s=30)
            elapsed_ms = (time.perf_counter() - start) * 1000
            if not done.ok:
                raise RuntimeError(f"task {task.id} ended {done.status}: {done.reason}")
            if i >= WARMUP:
                latencies_ms.append(elapsed_ms)
                for key, value in stages(done.raw).items():
                    parts.setdefault(key, []).append(value)
    finally:
        client.close()
    latencies_ms.sort()
    figures = {
        "trips": len(latencies_ms),
        "p50_ms": percentile(latencies_ms, 50),
        "p95_ms": percentile(latencies_ms, 95),
        "p99_ms": percentile(latencies_ms, 99),
        "mean_ms": statistics.fmean(latencies_ms),
        "max_ms": latencies_ms[-1],
    }
    for key, values in parts.items():
        figures[f"median_{key}"] = statistics.median(values)
    return figures


def report(figures: dict[str, float], bench: str = BENCH, suffix: str = "") -> None:
    figure(
        bench, "p50_ms" + suffix, figures["p50_ms"], target=TARGET_P50_MS, higher_is_better=False
    )
    for key, value in figures.items():
        if key != "p50_ms":
            figure(bench, key + suffix, value, fmt="{:.0f}" if key == "trips" else "{:.2f}")


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    n_trips, budget_s = (20, BUDGET_S / 10) if args.quick else (200, BUDGET_S)

    def body() -> None:
        with (
            LocalCluster(
                workers=2, slots=1, masters=args.masters, profile_dir=args.profile, name="rtt"
            ) as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            report(run(cluster, n_trips, budget_s), suffix=masters_suffix(args.masters))
            if args.keep_logs:
                print(cluster.logs())

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
