"""Memory per finished task: 100,000 trivial tasks, and where the master's bytes are.

Two parts:

* ``state``: the state machine alone, in this process. 100,000 ``true`` tasks (as the API
  builds them) are submitted in batches, assigned to 8 workers of 64 slots and reported
  completed, command by command as the log would apply them; then the bytes tracemalloc holds,
  per finished task, with a breakdown by source line, and the size of a snapshot.
* ``cluster``: a real master with workers (many slots, ``true`` commands, batch submits), and
  the resident set size of the master and of each worker once every task finished.

Targets: master RSS <= 150 MB after 100,000 finished tasks, each worker <= 60 MB.
``--quick`` runs 10,000 tasks; ``--part state`` or ``--part cluster`` runs one part.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

from agentflow.state import StateMachine
from agentflow.state.commands import (
    AssignTasks,
    NewTask,
    RegisterWorker,
    ReportAttempts,
    SubmitTasks,
    TaskOutcome,
)

BENCH = "memory_100k"
TARGET_MASTER_MB = 150.0
TARGET_WORKER_MB = 60.0
TASKS = 100_000
BATCH = 500
WORKERS = 8
SLOTS = 64
TOP_LINES = 15


def _new_task(i: int) -> NewTask:
    return NewTask(
        id=str(uuid.uuid4()),
        title="true",
        description="",
        spec={"env": {}, "cwd": None, "command": "true"},
    )


class _Driver:
    """Applies submit, assign and report commands to one machine, as the log would."""

    def __init__(self, sm: StateMachine) -> None:
        self.sm = sm
        self.index = 0
        self.now = 1_000_000

    def apply(self, command: Any) -> Any:
        self.index += 1
        self.now += 1
        return self.sm.apply(self.index, command)

    def workers(self) -> None:
        for w in range(WORKERS):
            self.apply(
                RegisterWorker(
                    now_ms=self.now,
                    worker_id=f"w{w}",
                    group="default",
                    slots=SLOTS,
                    resources={"cpu": 64.0, "memory_mb": 65536.0},
                    labels={},
                    hostname="bench",
                )
            )

    def batch(self, first: int, count: int) -> None:
        tasks = [_new_task(first + i) for i in range(count)]
        self.apply(SubmitTasks(now_ms=self.now, tasks=tasks))
        pending = [t.id for t in tasks]
        while pending:
            chunk, pending = pending[: WORKERS * SLOTS], pending[WORKERS * SLOTS :]
            pairs = [(tid, f"w{i % WORKERS}") for i, tid in enumerate(chunk)]
            self.apply(AssignTasks(now_ms=self.now, assignments=pairs))
            for w in range(WORKERS):
                mine = [tid for i, tid in enumerate(chunk) if i % WORKERS == w]
                tokens = [(tid, self.sm.tasks[tid].fencing_token or 0) for tid in mine]
                self.apply(
                    ReportAttempts(
                        now_ms=self.now,
                        worker_id=f"w{w}",
                        started=tokens,
                        outcomes=[
                            TaskOutcome(task_id=t, fencing_token=k, status="completed", exit_code=0)
                            for t, k in tokens
                        ],
                    )
                )
        self.sm.drain_events()


def state_part(n_tasks: int) -> dict[str, float]:
    gc.collect()
    tracemalloc.start(1)
    base = tracemalloc.take_snapshot()
    base_bytes = tracemalloc.get_traced_memory()[0]
    sm = StateMachine()
    driver = _Driver(sm)
    driver.workers()
    start = time.perf_counter()
    for first in range(0, n_tasks, BATCH):
        driver.batch(first, min(BATCH, n_tasks - first))
    elapsed = time.perf_counter() - start
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base_bytes
    after = tracemalloc.take_snapshot()
    print(f"{BENCH} top lines holding memory (state machine, {n_tasks} finished tasks):")
    for stat in after.compare_to(base, "lineno")[:TOP_LINES]:
        frame = stat.traceback[0]
        print(
            f"  {stat.size_diff / 2**20:8.2f} MiB {stat.count_diff:9d} blocks"
            f"  {frame.filename.rsplit('/src/', 1)[-1]}:{frame.lineno}"
        )
    snap_start = time.perf_counter()
    snapshot = sm.snapshot()
    snap_s = time.perf_counter() - snap_start
    restore_start = time.perf_counter()
    StateMachine().restore(snapshot)
    restore_s = time.perf_counter() - restore_start
    tracemalloc.stop()
    return {
        "state_bytes_per_task": held / n_tasks,
        "state_mb": held / 2**20,
        "snapshot_mb": len(snapshot) / 2**20,
        "snapshot_s": snap_s,
        "restore_s": restore_s,
        "apply_tasks_per_s": n_tasks / elapsed,
    }


def cluster_part(n_tasks: int) -> dict[str, float]:
    from _cluster import LocalCluster

    with LocalCluster(workers=2, slots=32, name="mem100k") as cluster:
        client = cluster.client()
        try:
            start = time.perf_counter()
            for first in range(0, n_tasks, BATCH):
                count = min(BATCH, n_tasks - first)
                client.submit_many([{"command": "true", "title": "true"}] * count)
                _wait_finished(client, first + count - 4 * BATCH, deadline=start + 3600)
            _wait_finished(client, n_tasks, deadline=start + 3600)
            elapsed = time.perf_counter() - start
        finally:
            client.close()
        figures = {"cluster_tasks_per_s": n_tasks / elapsed}
        for name, stats in cluster.stats().items():
            figures[f"{name}_rss_mb"] = stats.rss_mb
        return figures


def _wait_finished(client: Any, count: int, deadline: float) -> None:
    """Until the master counts ``count`` finished tasks: keeps a few batches in flight."""
    while True:
        totals = client.queue_stats()["totals"]
        done = sum(totals.get(k, 0) for k in ("completed", "failed", "timed_out", "cancelled"))
        if done >= count:
            return
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{done} of {count} tasks finished")
        time.sleep(0.2)


def _report(figures: dict[str, float]) -> None:
    from _cluster import figure

    for key, value in figures.items():
        if key.startswith("master") and key.endswith("_rss_mb"):
            figure(BENCH, key, value, target=TARGET_MASTER_MB, higher_is_better=False)
        elif key.startswith("worker") and key.endswith("_rss_mb"):
            figure(BENCH, key, value, target=TARGET_WORKER_MB, higher_is_better=False)
        else:
            figure(BENCH, key, value, fmt="{:.3f}" if key.endswith("_s") else "{:.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="10,000 tasks instead of 100,000")
    parser.add_argument("--tasks", type=int, default=None, help="how many tasks")
    parser.add_argument("--part", choices=("state", "cluster", "both"), default="both")
    args = parser.parse_args()
    n_tasks = args.tasks or (TASKS // 10 if args.quick else TASKS)
    parts: list[Callable[[int], dict[str, float]]] = []
    if args.part in ("state", "both"):
        parts.append(state_part)
    if args.part in ("cluster", "both"):
        parts.append(cluster_part)
    for part in parts:
        _report(part(n_tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
