"""Python callables: no-op throughput and round trip (issue 6).

- throughput: 10,000 tasks f(x) = x (``operator:pos``, a stdlib no-op) through the batch
  endpoint on 2 worker slots, from first submit to last completion: tasks/s. Ray does 2,028/s
  on this machine, Dask 659/s, Celery 586/s. Target >= 4,000/s on one master.
- map then gather (W1 of issue 14): ``client.map`` of the same 10,000 calls, then every value
  gathered over the client's event socket, from first submit to last value: tasks/s.
- round trip: 200 sequential submit-and-wait of f(x) = x: p50/p95/p99 ms. Target p50 <= 1.4 ms.
"""

from __future__ import annotations

import operator
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import LocalCluster, bench_args, figure, percentile, run_main

BENCH = "python_tasks"


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    n_tasks, n_trips = (1_000, 50) if args.quick else (10_000, 200)

    def body() -> None:
        with LocalCluster(workers=2, slots=1, name="python") as cluster:
            client = cluster.client()
            warm = client.submit_many({"function": "operator:pos", "args": [i]} for i in range(20))
            for task_id in warm:
                client.wait(task_id, timeout_s=60)
            base = client.queue_stats()["totals"]["completed"]
            start = time.perf_counter()
            client.submit_many({"function": "operator:pos", "args": [i]} for i in range(n_tasks))
            deadline = start + 300
            while client.queue_stats()["totals"]["completed"] - base < n_tasks:
                if time.perf_counter() > deadline:
                    raise TimeoutError("python tasks did not finish in 300 s")
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            stats = client.queue_stats()["totals"]
            if stats["failed"]:
                raise RuntimeError(f"{stats['failed']} python task(s) failed")
            figure(BENCH, "tasks_per_s", n_tasks / elapsed, target=4000.0)
            start = time.perf_counter()
            values = client.gather(client.map(operator.pos, range(n_tasks)), timeout_s=300)
            elapsed = time.perf_counter() - start
            if values != list(range(n_tasks)):
                raise RuntimeError("map then gather returned other values than it was given")
            figure(BENCH, "map_gather_tasks_per_s", n_tasks / elapsed, target=4000.0)
            trips = []
            for i in range(n_trips):
                t0 = time.perf_counter()
                task = client.submit(function="operator:pos", args=[i])
                client.wait(task.id, timeout_s=60)
                trips.append((time.perf_counter() - t0) * 1000)
            trips.sort()
            figure(
                BENCH,
                "round_trip_p50_ms",
                percentile(trips, 50),
                target=1.4,
                higher_is_better=False,
            )
            figure(BENCH, "round_trip_p95_ms", percentile(trips, 95))
            figure(BENCH, "round_trip_p99_ms", percentile(trips, 99))

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
