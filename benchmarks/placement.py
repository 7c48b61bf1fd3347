"""One scheduling pass with 1,000 workers and 10,000 queued tasks, in process (no I/O).

Prints `placement pass_ms=... target<=50 MET|NOT MET` for a mixed load: most tasks need only a
slot, a fifth need CPU and memory, a few need a GPU that a tenth of the workers have.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from agentflow.scheduler.placement import plan_pass
from agentflow.state import StateMachine
from agentflow.state.commands import NewTask, RegisterWorker, SubmitTasks

TARGET_MS = 50.0


def build(n_workers: int, n_tasks: int, rng: random.Random) -> StateMachine:
    sm = StateMachine()
    index = 0
    for i in range(n_workers):
        index += 1
        resources = {"cpu": 8.0, "memory_mb": 16_000.0, "gpu": 1.0 if i % 10 == 0 else 0.0}
        sm.apply(
            index,
            RegisterWorker(
                now_ms=0,
                worker_id=f"w{i:04d}",
                group="default",
                slots=4,
                resources=resources,
                labels={},
                hostname="h",
            ),
        )
    tasks = []
    for i in range(n_tasks):
        roll = rng.random()
        needs = (
            {"gpu": 1.0}
            if roll < 0.02
            else ({"cpu": 2.0, "memory_mb": 4_000.0} if roll < 0.2 else {})
        )
        tasks.append(
            NewTask(
                id=f"t{i:05d}",
                title="t",
                description="",
                spec={"command": "true"},
                resources=needs,
                priority=rng.choice(["urgent", "high", "medium", "low"]),
            )
        )
    index += 1
    sm.apply(index, SubmitTasks(now_ms=1, tasks=tasks))
    return sm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n_workers, n_tasks = (100, 1_000) if args.quick else (1_000, 10_000)
    sm = build(n_workers, n_tasks, random.Random(7))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        plan = plan_pass(sm, max_assignments=n_tasks)
        times.append((time.perf_counter() - start) * 1000)
    best = min(times)
    verdict = "MET" if best <= TARGET_MS else "NOT MET"
    print(f"placement workers={n_workers} queued={n_tasks} assignments={len(plan.assignments)}")
    print(f"placement pass_ms={best:.1f} target<={TARGET_MS:g} {verdict}")
    print(f"placement pass_ms_median={sorted(times)[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
