"""Submit throughput: N tasks accepted through the batch endpoint, 1,000 per request.

A master with no workers, so that nothing competes with accepting (the tasks stay queued).
Every accepted batch is durable (group-committed and fsynced) before its answer. Target:
>= 20,000 tasks/s through ``Client.submit_many``.

Also printed: ``raw_tasks_per_s``, the same batches pre-encoded and posted with plain httpx,
which takes the SDK's per-task cost (idempotency keys, JSON encoding) out of the figure, and
``raw2_tasks_per_s`` with two such posters at once, which shows whether group commit merges
concurrent batches; ``master_cpu_us_per_task``, the master's CPU per task of the SDK's batches;
``single_tasks_per_s`` and ``single_master_cpu_us_per_task``, the same for one ``submit`` at a
time (over the SDK's submit socket after the first).
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time

import httpx

from _cluster import LocalCluster, bench_args, deadline_guard, figure, run_main

BENCH = "submit_throughput"
TARGET_TASKS_PER_S = 20_000.0
BATCH = 1000
TIME_LIMIT_S = 180.0


def _specs(n: int, tag: str, group: str) -> list[dict[str, str]]:
    return [{"command": "true", "title": f"{tag}{i}", "group": group} for i in range(n)]


def via_sdk(cluster: LocalCluster, n_tasks: int, group: str = "default") -> float:
    """Tasks accepted per second through ``Client.submit_many`` (``group`` may have no
    workers, so that the tasks stay queued even where workers are attached)."""
    client = cluster.client()
    try:
        specs = _specs(n_tasks, "sdk", group)
        start = time.perf_counter()
        ids = client.submit_many(specs)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    if len(ids) != n_tasks:
        raise RuntimeError(f"submitted {n_tasks}, got {len(ids)} ids back")
    return n_tasks / elapsed


def _bodies(n_tasks: int, tag: str) -> list[bytes]:
    bodies = []
    for lo in range(0, n_tasks, BATCH):
        chunk = [
            {"command": "true", "title": f"{tag}{i}", "idempotency_key": secrets.token_hex(12)}
            for i in range(lo, min(n_tasks, lo + BATCH))
        ]
        bodies.append(json.dumps({"tasks": chunk}).encode())
    return bodies


def _post_all(http: httpx.Client, url: str, bodies: list[bytes], errors: list[str]) -> None:
    headers = {"content-type": "application/json"}
    for body in bodies:
        answer = http.post(url + "/api/v1/tasks/batch", content=body, headers=headers)
        if answer.status_code != 201:
            errors.append(f"{answer.status_code}: {answer.text[:200]}")
            return


def via_raw(cluster: LocalCluster, n_tasks: int, posters: int) -> float:
    """Pre-encoded batches, ``posters`` threads posting at once; tasks accepted per second."""
    share = n_tasks // posters
    work = [_bodies(share, f"raw{posters}-{p}-") for p in range(posters)]
    errors: list[str] = []
    # Clients are made before the clock starts: each one loads a TLS context (tens of ms).
    clients = [httpx.Client(timeout=60.0) for _ in range(posters)]
    threads = [
        threading.Thread(target=_post_all, args=(http, cluster.url, bodies, errors), daemon=True)
        for http, bodies in zip(clients, work, strict=True)
    ]
    try:
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIME_LIMIT_S)
        elapsed = time.perf_counter() - start
    finally:
        for http in clients:
            http.close()
    if errors:
        raise RuntimeError(f"batch refused: {errors[0]}")
    return share * posters / elapsed


def one_by_one(cluster: LocalCluster, n_tasks: int) -> float:
    """Tasks accepted per second through ``Client.submit``, one at a time (each answered once
    durable): after the first, the SDK sends them over its submit socket."""
    client = cluster.client()
    try:
        client.submit("true", title="warm-up")  # the first goes by HTTP
        start = time.perf_counter()
        for i in range(n_tasks):
            client.submit("true", title=f"one{i}")
        return n_tasks / (time.perf_counter() - start)
    finally:
        client.close()


def _master_cpu_s(cluster: LocalCluster) -> float:
    return cluster.stats()["master"].cpu_s


def run(cluster: LocalCluster, n_tasks: int) -> dict[str, float]:
    via_raw(cluster, BATCH, 1)  # warm up: imports, first transaction, connection
    n_single = max(100, n_tasks // 20)
    cpu_s = _master_cpu_s(cluster)
    single_per_s = one_by_one(cluster, n_single)
    single_cpu_s, cpu_s = _master_cpu_s(cluster) - cpu_s, _master_cpu_s(cluster)
    figures = {"tasks_per_s": via_sdk(cluster, n_tasks)}
    sdk_cpu_s = _master_cpu_s(cluster) - cpu_s
    return figures | {
        "master_cpu_us_per_task": sdk_cpu_s / n_tasks * 1e6,
        "single_tasks_per_s": single_per_s,
        "single_master_cpu_us_per_task": single_cpu_s / (n_single + 1) * 1e6,
        "raw_tasks_per_s": via_raw(cluster, n_tasks, 1),
        "raw2_tasks_per_s": via_raw(cluster, n_tasks, 2),
        "master_rss_mb": cluster.stats()["master"].rss_mb,
    }


def report(figures: dict[str, float]) -> None:
    figure(BENCH, "tasks_per_s", figures["tasks_per_s"], target=TARGET_TASKS_PER_S)
    for key, value in figures.items():
        if key != "tasks_per_s":
            figure(BENCH, key, value)


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    n_tasks = 1_000 if args.quick else 10_000

    def body() -> None:
        with (
            LocalCluster(workers=0, profile_dir=args.profile, name="submit") as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            report(run(cluster, n_tasks))
            if args.keep_logs:
                print(cluster.logs())

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
