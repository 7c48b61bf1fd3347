"""Write throughput on 3 masters: many concurrent clients, single tasks and batches.

No workers. ``single``: C concurrent ``POST /api/v1/tasks`` (C coroutines sharing an
``httpx.AsyncClient`` with C connections, each posting one tiny task after another) for a fixed
time, to the leader: acknowledged tasks per second (each acknowledged = committed on a majority,
fsynced, applied). Group commit is what should make this scale: many concurrent proposals, one
fsync and one AppendEntries for all of them. ``batch``: the same with ``POST
/api/v1/tasks/batch`` of 100 tasks a request, 8 at once. Target: >= 10,000 commands/s.

The load generator is a minimal asyncio HTTP/1.1 client (one kept-alive connection per
concurrent client): httpx.AsyncClient itself cannot drive more than a few hundred requests/s
at this concurrency on this machine (``single_c64_httpx``, printed for the record).

Also printed: log entries per second (``entries_per_s``; one Submit command per request),
the CPU each process spent per acknowledged task, and ``client_cpu_pct`` (the load generator
shares the machine: where it is near 100% it, not the cluster, may be the limit).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

from _cluster import LocalCluster, bench_args, deadline_guard, disk_figures, figure, run_main
from _rawhttp import RawConnection, cpu_s

BENCH = "write_throughput"
TARGET_PER_S = 10_000.0
TIME_LIMIT_S = 240.0
BATCH = 100
BATCH_CONCURRENCY = 8


def _payload(batch: int) -> tuple[str, bytes]:
    if batch > 1:
        tasks = [{"command": "true", "group": "bench-write"} for _ in range(batch)]
        return "/api/v1/tasks/batch", json.dumps({"tasks": tasks}).encode()
    return "/api/v1/tasks", b'{"command":"true","group":"bench-write"}'


async def _drive(
    url: str, concurrency: int, seconds: float, batch: int, use_httpx: bool = False
) -> tuple[int, int, float]:
    """(tasks acknowledged, requests acknowledged, elapsed seconds)."""
    path, body = _payload(batch)
    requests = 0
    errors: list[str] = []
    conns: list[RawConnection] = []
    http: httpx.AsyncClient | None = None
    if use_httpx:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        http = httpx.AsyncClient(timeout=30.0, limits=limits)
        # Open the connections before the clock starts.
        await asyncio.gather(*(http.get(url + "/health") for _ in range(concurrency)))
    else:
        conns = [RawConnection(url) for _ in range(concurrency)]
        await asyncio.gather(*(conn.connect() for conn in conns))
    raw = conns[0].encode("POST", path, body) if conns else b""  # encoded once, sent again
    start = time.perf_counter()
    stop_at = start + seconds

    async def one_client(n: int) -> None:
        nonlocal requests
        while time.perf_counter() < stop_at and not errors:
            if http is not None:
                answer = await http.post(
                    url + path, content=body, headers={"content-type": "application/json"}
                )
                status, text = answer.status_code, answer.content
            else:
                status, text = await conns[n].send(raw)
            if status != 201:
                errors.append(f"{status}: {text[:200]!r}")
                return
            requests += 1

    try:
        await asyncio.gather(*(one_client(n) for n in range(concurrency)))
        elapsed = time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()
        if http is not None:
            await http.aclose()
    if errors:
        raise RuntimeError(f"write refused: {errors[0]}")
    return requests * batch, requests, elapsed


def series(
    cluster: LocalCluster,
    name: str,
    concurrency: int,
    seconds: float,
    batch: int,
    *,
    use_httpx: bool = False,
    target: bool = True,
) -> None:
    leader = cluster.wait_leader()
    url = cluster.urls[leader]
    applied_before = cluster.cluster_status(leader)["applied_index"]  # type: ignore[index]
    cpu_before, client_before = cluster.stats(), cpu_s()
    tasks, requests, elapsed = asyncio.run(_drive(url, concurrency, seconds, batch, use_httpx))
    cpu_after, client_after = cluster.stats(), cpu_s()
    applied = cluster.cluster_status(leader)["applied_index"] - applied_before  # type: ignore[index]
    figure(BENCH, f"{name}_tasks_per_s", tasks / elapsed, target=TARGET_PER_S if target else None)
    figure(BENCH, f"{name}_requests_per_s", requests / elapsed)
    figure(BENCH, f"{name}_entries_per_s", applied / elapsed)
    figure(BENCH, f"{name}_mean_latency_ms", concurrency * elapsed / requests * 1000, fmt="{:.2f}")
    for proc, after in cpu_after.items():
        role = "leader" if proc == f"master{leader + 1}" else "follower"
        spent_ms = (after.cpu_s - cpu_before[proc].cpu_s) * 1000
        figure(BENCH, f"{name}_{proc}_{role}_cpu_ms_per_task", spent_ms / tasks, fmt="{:.3f}")
    figure(BENCH, f"{name}_client_cpu_pct", (client_after - client_before) / elapsed * 100)


def main() -> int:
    args = bench_args(__doc__ or BENCH)
    seconds = 1.5 if args.quick else 5.0

    def body() -> None:
        disk_figures(BENCH)
        with (
            LocalCluster(masters=3, profile_dir=args.profile, name="write3") as cluster,
            deadline_guard(TIME_LIMIT_S, BENCH),
        ):
            series(cluster, "single_c64", 64, seconds, 1)
            series(cluster, "single_c16", 16, seconds, 1)
            series(cluster, "single_c1", 1, seconds, 1, target=False)
            series(cluster, f"batch{BATCH}_c{BATCH_CONCURRENCY}", BATCH_CONCURRENCY, seconds, BATCH)
            series(cluster, "batch1000_c2", 2, seconds, 1000)
            # The same 64 clients through httpx.AsyncClient, for the record (client-bound).
            series(cluster, "single_c64_httpx", 64, seconds, 1, use_httpx=True, target=False)
            if args.keep_logs:
                print(cluster.logs())

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
