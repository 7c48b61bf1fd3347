"""Shell throughput: N tasks running ``true`` through 1 master + 2 one-slot workers.

The clock runs from the first submit (one batch request) until the master counts every task
finished. Master, workers, their ``true`` processes and this client share the machine, as in
the Ray (1,056/s) and Celery (466/s) figures we compare with. Target: >= 1,500 tasks/s.

Also printed: CPU milliseconds per task of each process (where the machine's time goes) and
log entries per task (each entry is part of a group-committed, fsynced batch).
"""

from __future__ import annotations

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
    run_main,
)

BENCH = "shell_throughput"
TARGET_TASKS_PER_S = 1500.0
TIME_LIMIT_S = 240.0


def totals(client: Any) -> dict[str, int]:
    stats = client.queue_stats()
    out: dict[str, int] = stats["totals"]
    return out


def finished(now: dict[str, int], base: dict[str, int]) -> int:
    keys = ("completed", "failed", "timed_out", "cancelled")
    return sum(now.get(k, 0) - base.get(k, 0) for k in keys)


def _ms(iso: str | None) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000 if iso else float("nan")


def timeline(client: Any, ids: set[str]) -> dict[str, float]:
    """From the master's stamps: how long the batch waited for its first assignment, and the
    rate from that first assignment to the last finish (the steady state)."""
    created, assigned, finished_at = [], [], []
    for task in client.iter_tasks(limit=1000, max_items=len(ids) + 100):
        if task.id in ids and task.raw["attempt_history"]:
            attempt = task.raw["attempt_history"][-1]
            created.append(_ms(task.raw["created_at"]))
            assigned.append(_ms(attempt["assigned_at"]))
            finished_at.append(_ms(attempt["finished_at"]))
    if not created:
        return {}
    span_ms = max(finished_at) - min(assigned)
    return {
        "first_assign_wait_ms": min(assigned) - min(created),
        "steady_tasks_per_s": len(created) / span_ms * 1000 if span_ms > 0 else float("nan"),
    }


def run(cluster: LocalCluster, n_tasks: int) -> dict[str, float]:
    """Submit ``n_tasks`` ``true`` tasks in one batch; wait for all; return the figures."""
    client = cluster.client()
    try:
        # Warm up: the first spawn on each worker pays imports and page faults.
        warm = client.submit_many([{"command": "true"} for _ in range(4)])
        for task_id in warm:
            client.wait(task_id, timeout_s=30)
        base = totals(client)
        applied_before = client.health()["applied_index"]
        cpu_before = cluster.stats()
        specs = [{"command": "true", "title": f"t{i}"} for i in range(n_tasks)]

        start = time.perf_counter()
        ids = client.submit_many(specs)
        submitted = time.perf_counter()
        # Long-poll the last task (no load on the master), then confirm the count.
        client.wait(ids[-1], timeout_s=TIME_LIMIT_S)
        while (now := totals(client)) and finished(now, base) < n_tasks:
            cluster.check_alive()
            time.sleep(0.002)
        elapsed = time.perf_counter() - start

        cpu_after = cluster.stats()
        applied = client.health()["applied_index"] - applied_before
        failed = n_tasks - (now["completed"] - base["completed"])
        phases = timeline(client, set(ids))
    finally:
        client.close()
    figures: dict[str, float] = {
        "tasks_per_s": n_tasks / elapsed,
        "elapsed_s": elapsed,
        "submit_ms": (submitted - start) * 1000,
        "failed": failed,
        "log_entries_per_task": applied / n_tasks,
        **phases,
    }
    if cluster.n_masters > 1:
        leader = cluster.leader_index()
        figures["leader_is_master"] = float("nan") if leader is None else leader + 1
    for name, after in cpu_after.items():
        before = cpu_before[name]
        figures[f"{name}_cpu_ms_per_task"] = (after.cpu_s - before.cpu_s) * 1000 / n_tasks
        if name.startswith("worker"):
            spent = after.children_cpu_s - before.children_cpu_s
            figures[f"{name}_tasks_cpu_ms_per_task"] = spent * 1000 / n_tasks
    return figures


def report(figures: dict[str, float], suffix: str = "") -> None:
    figure(BENCH, "tasks_per_s" + suffix, figures["tasks_per_s"], target=TARGET_TASKS_PER_S)
    for key, value in figures.items():
        if key != "tasks_per_s":
            figure(BENCH, key + suffix, value, fmt="{:.3f}" if value < 10 else "{:.1f}")


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    n_tasks = 50 if args.quick else 500
    masters, suffix = args.masters, masters_suffix(args.masters)

    def body() -> None:
        with (
            LocalCluster(
                workers=2, slots=1, masters=masters, profile_dir=args.profile, name="shell"
            ) as cluster,
            deadline_guard(TIME_LIMIT_S + 60, BENCH),
        ):
            report(run(cluster, n_tasks), suffix)
            if args.keep_logs:
                print(cluster.logs())
        # The same 2 slots, each worker holding 8 more attempts queued (--prefetch 8): no idle
        # slot between tasks, at the cost of strict priority order across workers.
        with (
            LocalCluster(
                workers=2, slots=1, prefetch=8, masters=masters, name="shell-prefetch"
            ) as cluster,
            deadline_guard(TIME_LIMIT_S + 60, BENCH),
        ):
            figures = run(cluster, n_tasks)
            figure(
                BENCH,
                "tasks_per_s_prefetch8" + suffix,
                figures["tasks_per_s"],
                target=TARGET_TASKS_PER_S,
            )

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
