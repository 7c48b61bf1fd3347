"""DAG analysis: validate + analyse a random 100,000-task, 300,000-edge DAG. Target: <= 1 s.

No cluster: this times the pure core that a workflow submit runs before anything is created
(issue 5): ``check()``, which validates and analyses in one pass over a shared index. The
two separate calls, ``validate()`` then ``analyse()``, are timed too (``separate_calls_s``),
for comparison. The graph comes from a seeded ``random.Random``: 300,000 distinct edges, each
between two tasks drawn at random, the lower-numbered one becoming the dependency (so the
graph is acyclic); then the tasks are shuffled, so that submission order is not a topological
order. Each task gets an estimate between 1 and 60 s. The best of a few rounds is the figure
(the first round also pays for warming up); the median is printed too.
"""

from __future__ import annotations

import random
import statistics
import sys
import time

from _cluster import bench_args, figure, run_main
from agentflow.scheduler.dag import DagTask, analyse, check, validate

BENCH = "dag_analysis"
TARGET_S = 1.0
SEED = 20_240_501


def random_dag(tasks: int, edges: int, rng: random.Random) -> list[DagTask]:
    """``tasks`` tasks and exactly ``edges`` distinct edges, in a random submission order."""
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < edges:
        a, b = rng.randrange(tasks), rng.randrange(tasks)
        if a != b:
            chosen.add((min(a, b), max(a, b)))
    dependencies: list[list[int]] = [[] for _ in range(tasks)]
    for parent, child in sorted(chosen):
        dependencies[child].append(parent)
    tasks_in_rank_order = [
        DagTask(
            id=f"t{i}",
            dependencies=tuple(f"t{p}" for p in deps),
            estimate_s=round(rng.uniform(1.0, 60.0), 3),
        )
        for i, deps in enumerate(dependencies)
    ]
    return rng.sample(tasks_in_rank_order, len(tasks_in_rank_order))


def body() -> None:
    args = bench_args(__doc__ or BENCH)
    tasks, edges, rounds = (10_000, 30_000, 3) if args.quick else (100_000, 300_000, 5)
    dag = random_dag(tasks, edges, random.Random(SEED))
    samples_s = []
    for _ in range(rounds):
        start = time.perf_counter()
        problems, checked = check(dag)
        samples_s.append(time.perf_counter() - start)
        if problems or checked is None:
            raise AssertionError(f"the random DAG is refused: {problems[0].message}")
        analysis = checked
    separate_s = []
    for _ in range(rounds):
        start = time.perf_counter()
        problems = validate(dag)
        separate = analyse(dag)
        separate_s.append(time.perf_counter() - start)
    if problems or separate != analysis:
        raise AssertionError("check() and validate() + analyse() disagree")
    print(
        f"{BENCH} tasks={analysis.task_count} edges={analysis.edge_count}"
        f" levels={len(analysis.levels)} max_width={analysis.max_width}"
        f" peak_parallelism={analysis.peak_parallelism}"
        f" critical_path_tasks={len(analysis.critical_path.task_ids)}"
        f" critical_path_s={analysis.critical_path.length_s:.1f}",
        flush=True,
    )
    figure(BENCH, "separate_calls_s", min(separate_s), fmt="{:.3f}")
    figure(BENCH, "validate_and_analyse_median_s", statistics.median(samples_s), fmt="{:.3f}")
    figure(
        BENCH,
        "validate_and_analyse_s",
        min(samples_s),
        target=TARGET_S,
        higher_is_better=False,
        fmt="{:.3f}",
    )


if __name__ == "__main__":
    sys.exit(run_main(BENCH, body))
