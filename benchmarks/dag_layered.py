"""Layered DAG: 10 layers x 100 no-op (``true``) tasks through 1 master + 2 one-slot workers.

Task j of layer k depends on tasks j and (j + 1) mod 100 of layer k - 1, so each layer can
start only as the one before it finishes, and the scheduler has to release dependents as
their dependencies complete. One ``POST /api/v1/workflows`` submits the whole graph; the
clock runs from that request until the workflow is finished, seen by long-polling
``GET /api/v1/workflows/{id}?wait_s=30``. The comparison figures are the same graph of no-op
Python tasks on Ray (0.48 s), Dask (1.2 s) and Celery (5.6 s); here each task is a ``true``
process. Then the same with each worker holding 8 more attempts queued (``--prefetch 8``),
as in ``shell_throughput``.

A master without the workflows API answers 404: the benchmark then prints one
``dag_layered SKIPPED`` line and exits 0.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import httpx

from _cluster import (
    LocalCluster,
    bench_args,
    deadline_guard,
    figure,
    masters_suffix,
    run_main,
)

BENCH = "dag_layered"
COMPARE = "(Ray 0.48 s, Dask 1.2 s, Celery 5.6 s for no-op Python tasks)"
TIME_LIMIT_S = 240.0
POLL_WAIT_S = 30.0
FINISHED = ("completed", "failed", "cancelled")


class WorkflowsMissingError(Exception):
    """The master has no ``/api/v1/workflows`` yet."""


def layered(layers: int, width: int, name: str = "layered") -> dict[str, Any]:
    tasks = [
        {
            "id": f"k{k}-j{j}",
            "command": "true",
            "dependencies": ([] if k == 0 else [f"k{k - 1}-j{j}", f"k{k - 1}-j{(j + 1) % width}"]),
        }
        for k in range(layers)
        for j in range(width)
    ]
    return {"name": name, "tasks": tasks}


def submit(http: httpx.Client, body: dict[str, Any]) -> str:
    answer = http.post("/api/v1/workflows", json=body)
    if answer.status_code in (404, 405):
        raise WorkflowsMissingError(f"POST /api/v1/workflows answered {answer.status_code}")
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"submit answered {answer.status_code}: {answer.text[:300]}")
    workflow_id: str = answer.json()["id"]
    return workflow_id


def wait_finished(
    http: httpx.Client, cluster: LocalCluster, workflow_id: str, limit_s: float
) -> dict[str, Any]:
    """Long-poll until the workflow is finished; its last view."""
    deadline = time.monotonic() + limit_s
    while True:
        answer = http.get(
            f"/api/v1/workflows/{workflow_id}",
            params={"wait_s": POLL_WAIT_S},
            timeout=POLL_WAIT_S + 10.0,
        )
        answer.raise_for_status()
        view: dict[str, Any] = answer.json()
        if view["status"] in FINISHED:
            return view
        cluster.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"workflow {workflow_id} not finished after {limit_s:g}s: {view}")


def run(cluster: LocalCluster, layers: int, width: int) -> dict[str, float]:
    with httpx.Client(base_url=cluster.url, timeout=60.0) as http:
        # Warm up: the first spawn on each worker, and the workflow path, pay imports.
        wait_finished(http, cluster, submit(http, layered(2, 2, "warm-up")), TIME_LIMIT_S)
        body = layered(layers, width)
        cpu_before = cluster.stats()
        start = time.perf_counter()
        workflow_id = submit(http, body)
        submitted = time.perf_counter()
        view = wait_finished(http, cluster, workflow_id, TIME_LIMIT_S)
        elapsed = time.perf_counter() - start
        cpu_after = cluster.stats()
    n_tasks = layers * width
    counts = view.get("counts", {})
    if view["status"] != "completed" or counts.get("completed", 0) != n_tasks:
        raise RuntimeError(f"workflow ended {view['status']} with counts {counts}")
    figures = {
        "wall_s": elapsed,
        "submit_ms": (submitted - start) * 1000,
        "server_elapsed_s": float(view.get("elapsed_s", float("nan"))),
        "tasks_per_s": n_tasks / elapsed,
    }
    for name, after in cpu_after.items():
        figures[f"{name}_cpu_ms_per_task"] = (after.cpu_s - cpu_before[name].cpu_s) * 1000 / n_tasks
    return figures


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    layers, width = (10, 10) if args.quick else (10, 100)
    masters, suffix = args.masters, masters_suffix(args.masters)

    def body() -> None:
        with (
            LocalCluster(
                workers=2, slots=1, masters=masters, profile_dir=args.profile, name="layered"
            ) as cluster,
            deadline_guard(TIME_LIMIT_S + 60, BENCH),
        ):
            try:
                figures = run(cluster, layers, width)
            except WorkflowsMissingError as exc:
                print(f"{BENCH} SKIPPED: workflows API not available ({exc})", flush=True)
                return
            if args.keep_logs:
                print(cluster.logs())
        print(f"{BENCH} layers={layers} width={width} tasks={layers * width}", flush=True)
        print(f"{BENCH} wall_s{suffix}={figures['wall_s']:.3f} {COMPARE}", flush=True)
        for key, value in figures.items():
            if key != "wall_s":
                figure(BENCH, key + suffix, value, fmt="{:.3f}" if value < 10 else "{:.1f}")
        # The same 2 slots, each worker holding 8 more attempts queued (--prefetch 8).
        with (
            LocalCluster(
                workers=2, slots=1, prefetch=8, masters=masters, name="layered-prefetch"
            ) as cluster,
            deadline_guard(TIME_LIMIT_S + 60, BENCH),
        ):
            figures = run(cluster, layers, width)
        print(f"{BENCH} wall_s_prefetch8{suffix}={figures['wall_s']:.3f} {COMPARE}", flush=True)
        figure(BENCH, "tasks_per_s_prefetch8" + suffix, figures["tasks_per_s"])

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
