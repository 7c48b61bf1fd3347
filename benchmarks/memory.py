"""Memory: resident set size of the master and each worker after the other workloads.

One cluster (1 master, 2 one-slot workers) runs, in order, the shell throughput workload, the
round trip workload and the submit workload (its tasks go to a group with no workers, so they
stay queued and held by the master), then psutil reads each process's RSS. Targets: master
<= 120 MB, each worker <= 60 MB.
"""

from __future__ import annotations

import sys

import round_trip
import shell_throughput
import submit_throughput
from _cluster import LocalCluster, bench_args, deadline_guard, figure, run_main

BENCH = "memory"
TARGET_MASTER_MB = 120.0
TARGET_WORKER_MB = 60.0
TIME_LIMIT_S = 300.0
ROUND_TRIP_BUDGET_S = 30.0


def run(cluster: LocalCluster, quick: bool) -> dict[str, float]:
    scale = 10 if quick else 1
    baseline = cluster.stats()
    shell_throughput.run(cluster, 500 // scale)
    round_trip.run(cluster, 200 // scale, budget_s=ROUND_TRIP_BUDGET_S / scale)
    submit_throughput.via_sdk(cluster, 10_000 // scale, group="bench-no-workers")
    figures: dict[str, float] = {}
    for name, stats in cluster.stats().items():
        figures[f"{name}_rss_mb"] = stats.rss_mb
        figures[f"{name}_rss_at_start_mb"] = baseline[name].rss_mb
    return figures


def report(figures: dict[str, float]) -> None:
    for key, value in figures.items():
        if key.endswith("_at_start_mb"):
            figure(BENCH, key, value)
        elif key.startswith("master"):
            figure(BENCH, key, value, target=TARGET_MASTER_MB, higher_is_better=False)
        else:
            figure(BENCH, key, value, target=TARGET_WORKER_MB, higher_is_better=False)


def main() -> int:
    args = bench_args(__doc__ or BENCH)

    def body() -> None:
        with (
            LocalCluster(workers=2, slots=1, profile_dir=args.profile, name="mem") as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            report(run(cluster, args.quick))
            if args.keep_logs:
                print(cluster.logs())

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
