"""The foundation's task benchmarks on 3 masters: shell throughput and round trip, ``_3m``.

The same workloads as ``shell_throughput.py`` (500 ``true`` tasks in one batch, 2 one-slot
workers; also with ``--prefetch 8``) and ``round_trip.py`` (200 sequential submit + wait), on a
Raft group of 3 masters: every state change (submit, assign, start, finish) is committed on a
majority, so each figure carries one more network round trip and a follower's fsync per
commit than on 1 master. Workers and the client are given all three URLs and follow the
leader. Same targets as on 1 master; figures carry a ``_3m`` suffix (same as running either
script with ``--masters 3``).
"""

from __future__ import annotations

import sys

import round_trip
import shell_throughput
from _cluster import LocalCluster, bench_args, deadline_guard, disk_figures, figure, run_main

MASTERS = 3
SUFFIX = f"_{MASTERS}m"
TIME_LIMIT_S = 400.0


def main() -> int:
    args = bench_args(__doc__ or "cluster_tasks")
    n_tasks, n_trips = (50, 20) if args.quick else (500, 200)
    budget_s = round_trip.BUDGET_S / (10 if args.quick else 1)

    def body() -> None:
        disk_figures("cluster_tasks")
        with deadline_guard(TIME_LIMIT_S, "cluster_tasks"):
            with LocalCluster(
                workers=2, slots=1, masters=MASTERS, profile_dir=args.profile, name="shell3"
            ) as cluster:
                shell_throughput.report(shell_throughput.run(cluster, n_tasks), SUFFIX)
                if args.keep_logs:
                    print(cluster.logs())
            with LocalCluster(
                workers=2, slots=1, prefetch=8, masters=MASTERS, name="shell3-prefetch"
            ) as cluster:
                figures = shell_throughput.run(cluster, n_tasks)
                figure(
                    shell_throughput.BENCH,
                    "tasks_per_s_prefetch8" + SUFFIX,
                    figures["tasks_per_s"],
                    target=shell_throughput.TARGET_TASKS_PER_S,
                )
            with LocalCluster(workers=2, slots=1, masters=MASTERS, name="rtt3") as cluster:
                round_trip.report(round_trip.run(cluster, n_trips, budget_s), suffix=SUFFIX)

    return run_main("cluster_tasks", body)


if __name__ == "__main__":
    sys.exit(main())
