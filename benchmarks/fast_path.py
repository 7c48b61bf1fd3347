"""The fast path (issue 14): W1-W4 as in the issue's table, on 1 master and on 3 masters.

Setup, as the peers (Celery, Dask, Ray) were measured: one master (or three, a Raft group), 2
worker slots (2 one-slot workers, as in every benchmark here; ``--layout 1x2`` for one 2-slot
worker), the client, all on 127.0.0.1; default flags everywhere (fsync on, no ``--prefetch``).
Each run of each workload gets a fresh cluster; ``--runs N`` repeats it and prints the median.

- W1: 10,000 no-op Python calls, ``client.map(noop, range(n))`` then every result gathered
  (``client.gather`` where the SDK has it, else each future's ``result()``, in order): tasks/s
  from the map call until the last value is in hand. Target >= 4,000/s.
- W2: 200 sequential ``client.submit(noop, i).result()`` after a warm-up: p50 / p99 ms.
  Target <= 1.2 / <= 2.5 ms.
- W3: one workflow of 10 layers x 100 no-op calls, task j of layer k depending on tasks j and
  (j + 1) mod 100 of layer k - 1 (2 parents each): wall seconds from ``submit_workflow`` until
  ``wait_workflow`` sees it completed. Target <= 0.3 s.
- W4: 500 shell ``true`` tasks in one ``submit_many``, then every task waited for
  (``client.wait_many`` where the SDK has it, else ``client.wait`` each): tasks/s. Target >= 1,500.
- seed (3 masters only): 2,000 ``true`` tasks as W4: the seed's > 1,000 tasks/s.
- CPU ms per task under W1 of the master, each worker and (``w1_runners_cpu_ms_per_task``)
  the workers' Python runners together; RSS of the master and of each worker (and its Python
  runner) after W1, ``w1_*_rss_mb``;
  ``--rss-100k``: 100,000 no-op calls (10 rounds of 10,000, each waited for) on one master, then
  the master's RSS (target <= 150 MB) and the workers' (<= 60 MB).
- profile (1 master): W1 once more with py-spy attached to the master and to one worker (and its
  runners), speedscope files in ``--profile-out``, and the functions with the most self time
  printed; cProfile (``.prof`` files) where py-spy is missing or cannot attach.

The no-op is ``noop_tasks:noop`` (this folder, put on the workers' ``PYTHONPATH``).

``--store postgresql`` or ``--store mysql`` runs the masters on a SQL store instead of the
embedded Raft log: a throwaway server on loopback (``agentflow.testing.sqlserve``), a fresh
database for each cluster, ``--masters 1 2`` (one writer, the others following). After each
run the leader's log timings are printed (``<workload>_log_*``: appends, mean append ms,
entries per append, mean commit ms), on either store.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _profiles
from _cluster import LocalCluster, deadline_guard, disk_figures, figure, percentile, run_main
from _stores import STORES, StoreServer, log_timings, store_server
from noop_tasks import noop

BENCH = "fast_path"
HERE = Path(__file__).resolve().parent
WORKLOADS = ("w1", "w2", "w3", "w4", "seed", "profile", "rss100k")
DEFAULT_ONLY = ("w1", "w2", "w3", "w4", "seed", "profile")
RUN_LIMIT_S = 300.0
RSS_LIMIT_S = 1500.0
WARMUP = 20
WAIT_S = 120.0
# name: (full count, quick count)
COUNTS = {
    "w1": (10_000, 1_000),
    "w2": (200, 50),
    "w3": (100, 10),  # width; 10 layers either way
    "w4": (500, 100),
    "seed": (2_000, 200),
    "rss100k": (100_000, 10_000),
}
LAYERS = 10
RSS_ROUNDS = 10
TARGETS = {  # figure: (target, higher is better)
    "w1_tasks_per_s": (4000.0, True),
    "w2_p50_ms": (1.2, False),
    "w2_p99_ms": (2.5, False),
    "w3_wall_s": (0.3, False),
    "w4_tasks_per_s": (1500.0, True),
    "seed_shell_tasks_per_s": (1000.0, True),
    "w1_worker_rss_mb": (60.0, False),
    "rss100k_master_rss_mb": (150.0, False),
    "rss100k_worker_rss_mb": (60.0, False),
}
# -- the SDK's waits: the newest where it has them ----------------------------------------


def gather(client: Any, futures: list[Any]) -> tuple[list[Any], str]:
    """Every future's value, in order, and how they were waited for."""
    sdk_gather = getattr(client, "gather", None)
    if callable(sdk_gather):
        return list(sdk_gather(futures)), "client.gather"
    return [f.result(timeout_s=WAIT_S) for f in futures], "future.result"


def wait_all(client: Any, ids: list[str]) -> tuple[list[Any], str]:
    """Every task's final view, and how they were waited for."""
    wait_many = getattr(client, "wait_many", None)
    if callable(wait_many):
        infos = wait_many(ids)
        return list(infos.values() if isinstance(infos, dict) else infos), "client.wait_many"
    return [client.wait(task_id, timeout_s=WAIT_S) for task_id in ids], "client.wait"


# -- the workloads: each on a fresh cluster, each returns its figures ------------------------


def _rss(cluster: LocalCluster, prefix: str) -> dict[str, float]:
    """RSS of the master(s), the largest worker and the largest of its Python runners."""
    out: dict[str, float] = {}
    stats = cluster.stats()
    workers = [s for name, s in stats.items() if name.startswith("worker")]
    masters = [s for name, s in stats.items() if name.startswith("master")]
    out[f"{prefix}_master_rss_mb"] = max(s.rss_mb for s in masters)
    if workers:
        out[f"{prefix}_worker_rss_mb"] = max(s.rss_mb for s in workers)
    runners = [
        child.memory_info().rss / 2**20
        for w in cluster.workers
        for child in w.ps.children(recursive=True)
    ]
    if runners:
        out[f"{prefix}_runner_rss_mb"] = max(runners)
    return out


def _cpu_per_task(
    before: dict[str, Any], after: dict[str, Any], n: int, prefix: str
) -> dict[str, float]:
    return {
        f"{prefix}_{name}_cpu_ms_per_task": (after[name].cpu_s - before[name].cpu_s) * 1000 / n
        for name in after
        if name in before
    }


def _runners_cpu_s(cluster: LocalCluster) -> dict[int, float]:
    """CPU seconds of each worker's Python runners so far, by runner pid (they are the
    workers' children, not waited for, so ``children_cpu_s`` does not count them)."""
    cpu: dict[int, float] = {}
    for worker in cluster.workers:
        for child in worker.ps.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                times = child.cpu_times()
                cpu[child.pid] = times.user + times.system
    return cpu


def _runners_cpu_per_task(
    before: dict[int, float], after: dict[int, float], n: int, prefix: str
) -> dict[str, float]:
    """The runners' CPU ms per task, all workers together (a runner replaced meanwhile
    counts from zero)."""
    spent = sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())
    return {f"{prefix}_runners_cpu_ms_per_task": spent * 1000 / n}


def w1(cluster: LocalCluster, n: int) -> dict[str, float]:
    with cluster.client() as client:
        gather(client, client.map(noop, range(WARMUP)))
        before = cluster.stats()
        runners_before = _runners_cpu_s(cluster)
        start = time.perf_counter()
        futures = client.map(noop, range(n))
        mapped = time.perf_counter()
        values, how = gather(client, futures)
        elapsed = time.perf_counter() - start
        after = cluster.stats()
        runners_after = _runners_cpu_s(cluster)
    if values != list(range(n)):
        raise RuntimeError("W1: the gathered values are not the inputs, in order")
    print(f"{BENCH} w1_waited_by={how}", flush=True)
    return {
        "w1_tasks_per_s": n / elapsed,
        "w1_elapsed_s": elapsed,
        "w1_map_s": mapped - start,
        **_cpu_per_task(before, after, n, "w1"),
        **_runners_cpu_per_task(runners_before, runners_after, n, "w1"),
        **_rss(cluster, "w1"),
    }


def http_floor_ms(client: Any, n: int = 50) -> float:
    """Median of ``n`` ``GET /health`` through the SDK: the floor under every request. Far
    above a millisecond on loopback means the transport is wrong (e.g. Nagle's algorithm left
    on the server's sockets meets the client's delayed ACK: about 40 ms a response)."""
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        client.health()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def w2(cluster: LocalCluster, n: int) -> dict[str, float]:
    samples_ms = []
    with cluster.client() as client:
        floor_ms = http_floor_ms(client)
        for i in range(WARMUP // 4 + n):
            start = time.perf_counter()
            value = client.submit(noop, i).result(timeout_s=WAIT_S)
            elapsed_ms = (time.perf_counter() - start) * 1000
            if value != i:
                raise RuntimeError(f"W2: call {i} returned {value!r}")
            if i >= WARMUP // 4:
                samples_ms.append(elapsed_ms)
    samples_ms.sort()
    return {
        "w2_p50_ms": percentile(samples_ms, 50),
        "w2_p99_ms": percentile(samples_ms, 99),
        "w2_mean_ms": statistics.fmean(samples_ms),
        "w2_max_ms": samples_ms[-1],
        "w2_http_floor_ms": floor_ms,
    }


def layered(layers: int, width: int, name: str) -> dict[str, Any]:
    """Task j of layer k calls noop after tasks j and (j + 1) mod width of layer k - 1."""
    tasks = [
        {
            "id": f"k{k}-j{j}",
            "function": noop,
            "dependencies": [] if k == 0 else [f"k{k - 1}-j{j}", f"k{k - 1}-j{(j + 1) % width}"],
        }
        for k in range(layers)
        for j in range(width)
    ]
    return {"name": name, "tasks": tasks}


def w3(cluster: LocalCluster, width: int) -> dict[str, float]:
    with cluster.client() as client:
        client.wait_workflow(client.submit_workflow(layered(2, 2, "warm-up"))["id"], WAIT_S)
        body = layered(LAYERS, width, "w3")  # built before the clock starts
        start = time.perf_counter()
        workflow_id = client.submit_workflow(body)["id"]
        submitted = time.perf_counter()
        view = client.wait_workflow(workflow_id, timeout_s=WAIT_S)
        elapsed = time.perf_counter() - start
    n = LAYERS * width
    if view.get("status") != "completed" or view.get("counts", {}).get("completed") != n:
        raise RuntimeError(f"W3: workflow ended {view.get('status')}: {view.get('counts')}")
    return {"w3_wall_s": elapsed, "w3_submit_ms": (submitted - start) * 1000}


def shell_batch(cluster: LocalCluster, n: int, prefix: str) -> dict[str, float]:
    with cluster.client() as client:
        wait_all(client, client.submit_many([{"command": "true"} for _ in range(4)]))
        specs = [{"command": "true"} for _ in range(n)]
        before = cluster.stats()
        start = time.perf_counter()
        ids = client.submit_many(specs)
        submitted = time.perf_counter()
        infos, how = wait_all(client, ids)
        elapsed = time.perf_counter() - start
        after = cluster.stats()
    bad = [i for i in infos if not getattr(i, "ok", False)]
    if len(infos) != n or bad:
        raise RuntimeError(f"{prefix}: {len(bad)} of {len(infos)} tasks did not complete")
    print(f"{BENCH} {prefix}_waited_by={how}", flush=True)
    return {
        f"{prefix}_tasks_per_s": n / elapsed,
        f"{prefix}_submit_ms": (submitted - start) * 1000,
        **_cpu_per_task(before, after, n, prefix),
    }


def w4(cluster: LocalCluster, n: int) -> dict[str, float]:
    return shell_batch(cluster, n, "w4")


def seed(cluster: LocalCluster, n: int) -> dict[str, float]:
    figures = shell_batch(cluster, n, "seed")
    return {"seed_shell_tasks_per_s": figures.pop("seed_tasks_per_s"), **figures}


def _finished(client: Any) -> int:
    totals = client.queue_stats()["totals"]
    return sum(int(totals.get(k, 0)) for k in ("completed", "failed", "timed_out", "cancelled"))


def rss100k(cluster: LocalCluster, n: int) -> dict[str, float]:
    """``n`` no-op calls in rounds of ``n / 10``, each round waited for (the master's count,
    polled every 0.2 s); the master's RSS after each round, and at the end."""
    figures: dict[str, float] = {}
    chunk = n // RSS_ROUNDS
    with cluster.client() as client:
        base = _finished(client)
        start_rss = _rss(cluster, "rss100k")["rss100k_master_rss_mb"]
        for round_no in range(1, RSS_ROUNDS + 1):
            client.map(noop, range(chunk))
            while _finished(client) - base < round_no * chunk:
                cluster.check_alive()
                time.sleep(0.2)
            rss = _rss(cluster, "rss100k")["rss100k_master_rss_mb"]
            print(f"{BENCH} rss100k_master_rss_mb_at_{round_no * chunk}={rss:.1f}", flush=True)
        totals = client.queue_stats()["totals"]
    if totals.get("completed", 0) < n:
        raise RuntimeError(f"rss100k: only {totals.get('completed')} of {n} completed")
    figures.update(_rss(cluster, "rss100k"))
    figures["rss100k_master_kb_per_task"] = (
        (figures["rss100k_master_rss_mb"] - start_rss) * 1024 / n
    )
    figures["rss100k_tasks"] = float(n)
    return figures


# -- the profile -----------------------------------------------------------------------------


def profile(args: argparse.Namespace, n: int) -> None:
    """W1 once more with py-spy on the master and worker1 (and its runners); else cProfile."""
    out = args.profile_out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    spy = _profiles.py_spy() if args.profiler != "cprofile" else None
    if spy is None and args.profiler == "py-spy":
        raise RuntimeError("--profiler py-spy: py-spy not found (pip install py-spy)")
    if spy is not None:
        with _cluster(args, 1, "prof-spy") as cluster, deadline_guard(RUN_LIMIT_S, "profile"):
            assert cluster.master is not None
            recorders = {
                "master": _profiles.SpyRecorder(
                    spy, cluster.master.proc.pid, out / "master.speedscope.json"
                ),
                "worker1+runners": _profiles.SpyRecorder(
                    spy,
                    cluster.workers[0].proc.pid,
                    out / "worker1.speedscope.json",
                    subprocesses=True,
                ),
            }
            try:
                _profiles.wait_attached(list(recorders.values()))
                figures = w1(cluster, n)
            finally:
                written = {who: r.stop() for who, r in recorders.items()}
        print(
            f"{BENCH} profile w1 under py-spy: {figures['w1_tasks_per_s']:.1f} tasks/s", flush=True
        )
        for who, recorder in recorders.items():
            if not written[who]:
                raise RuntimeError(f"py-spy wrote no profile of {who}: {recorder.failure()}")
            covered, hot, ours = _profiles.speedscope_top(recorder.out)
            _profiles.print_top(BENCH, who, covered, hot)
            _profiles.print_top(BENCH, who, covered, ours, kind="inclusive")
        print(f"{BENCH} profile files: {out}/*.speedscope.json (open in speedscope)", flush=True)
        return
    print(f"{BENCH} profile: cProfile (py-spy not found or not chosen)", flush=True)
    with _cluster(args, 1, "prof-cprofile", profile_dir=out) as cluster:
        w1(cluster, n)
    for name in ("master", "worker1"):
        seconds, hot = _profiles.pstats_top(out / f"{name}.prof")
        _profiles.print_top(BENCH, name, f"{seconds:.2f} s (waits left out)", hot)
    print(f"{BENCH} profile files: {out}/*.prof (python -m pstats)", flush=True)


# -- running and reporting -------------------------------------------------------------------


def _cluster(
    args: argparse.Namespace, masters: int, name: str, profile_dir: Path | None = None
) -> LocalCluster:
    workers, slots = (2, 1) if args.layout == "2x1" else (1, 2)
    pythonpath = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH")) if p)
    stores: StoreServer = args.stores
    return LocalCluster(
        workers=workers,
        slots=slots,
        masters=masters,
        name=name,
        profile_dir=profile_dir,
        worker_env={"PYTHONPATH": pythonpath},
        store_url=stores.new_database(),
        master_args=["--store-poll", str(args.store_poll)] if args.store_poll else [],
    )


def _leader_timings(cluster: LocalCluster, name: str) -> dict[str, float]:
    """The log timings of the master that leads now (the only one, on one master)."""
    leader = 0 if cluster.n_masters == 1 else cluster.wait_leader()
    if cluster.n_masters > 1:  # the client asks the first master: through a follower or not
        print(f"{BENCH} {name}_{cluster.n_masters}m leader=master{leader + 1}", flush=True)
    return log_timings(cluster.urls[leader], f"{name}_log")


RUNNERS: dict[str, Callable[[LocalCluster, int], dict[str, float]]] = {
    "w1": w1,
    "w2": w2,
    "w3": w3,
    "w4": w4,
    "seed": seed,
    "rss100k": rss100k,
}


def medians(runs: Iterable[dict[str, float]]) -> dict[str, float]:
    runs = list(runs)
    keys = [k for k in runs[0] if all(k in r for r in runs)]
    return {k: statistics.median(r[k] for r in runs) for k in keys}


def report(figures: dict[str, float], suffix: str) -> None:
    for key, value in figures.items():
        target = TARGETS.get(key)
        fmt = "{:.3f}" if abs(value) < 10 else "{:.1f}"
        if target is None:
            figure(BENCH, key + suffix, value, fmt=fmt)
        else:
            figure(
                BENCH, key + suffix, value, target=target[0], higher_is_better=target[1], fmt=fmt
            )


def run_workload(args: argparse.Namespace, name: str, masters: int) -> None:
    count = args.count.get(name, COUNTS[name][1 if args.quick else 0])
    runs = 1 if name == "rss100k" else args.runs
    suffix = "" if masters == 1 else f"_{masters}m"
    results = []
    for run in range(1, runs + 1):
        limit = RSS_LIMIT_S if name == "rss100k" else RUN_LIMIT_S
        with (
            _cluster(args, masters, f"{name}{masters}m") as cluster,
            deadline_guard(limit, f"{name} on {masters} master(s)"),
        ):
            results.append(RUNNERS[name](cluster, count) | _leader_timings(cluster, name))
            if args.keep_logs:
                print(cluster.logs())
        if runs > 1:
            head = next(iter(results[-1]))
            print(f"{BENCH} {head}{suffix}_run{run}={results[-1][head]:.3f}", flush=True)
    if runs > 1:
        print(f"{BENCH} {name}{suffix}: medians of {runs} runs", flush=True)
    report(medians(results), suffix)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="about 10x smaller counts")
    parser.add_argument(
        "--masters",
        type=int,
        nargs="+",
        choices=(1, 2, 3),
        default=None,
        help="cluster sizes (default 1 3; on a SQL store 1 2)",
    )
    parser.add_argument(
        "--store",
        choices=STORES,
        default="sqlite",
        help="the masters' log: the embedded Raft log (sqlite), or a throwaway PostgreSQL or"
        " MariaDB server on loopback, a fresh database for each cluster",
    )
    parser.add_argument("--runs", type=int, default=1, help="runs of each workload (median)")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(DEFAULT_ONLY))
    parser.add_argument("--rss-100k", action="store_true", help="add the 100,000-task RSS run")
    parser.add_argument(
        "--store-poll",
        type=float,
        default=None,
        metavar="S",
        help="on a SQL store, the masters' --store-poll (how often a follower reads new entries)",
    )
    parser.add_argument(
        "--layout",
        choices=("2x1", "1x2"),
        default="2x1",
        help="2 slots as 2 one-slot workers (default) or one 2-slot worker",
    )
    parser.add_argument(
        "--profile-out",
        type=Path,
        default=HERE.parent / ".bench" / "profiles",
        help="where the profile files go (default .bench/profiles)",
    )
    parser.add_argument(
        "--profiler",
        choices=("auto", "py-spy", "cprofile"),
        default="auto",
        help="what profiles W1: py-spy where found (auto), or cProfile",
    )
    parser.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="NAME=N",
        help="another count for one workload (e.g. w1=2000; w3 is the width), said in the output",
    )
    parser.add_argument("--keep-logs", action="store_true", help="print process logs")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.masters is None:
        args.masters = [1, 3] if args.store == "sqlite" else [1, 2]
    if args.store_poll is not None and (args.store == "sqlite" or args.store_poll <= 0):
        parser.error("--store-poll is a positive number of seconds, for a SQL store")
    if args.store == "sqlite" and 2 in args.masters:
        parser.error("--masters 2 is for a SQL store (a Raft group of 2 has no spare vote)")
    counts = {}
    for item in args.count:
        name, _, value = item.partition("=")
        if name not in COUNTS or not value.isdigit() or int(value) < RSS_ROUNDS:
            parser.error(f"--count {item}: expected NAME=N, NAME one of {', '.join(COUNTS)}")
        counts[name] = int(value)
    args.count = counts
    if args.rss_100k and "rss100k" not in args.only:
        args.only.append("rss100k")
    return args


def workloads(args: argparse.Namespace) -> None:
    for masters in args.masters:
        for name in ("w1", "w2", "w3", "w4", "seed"):
            if name in args.only and (name != "seed" or masters == 3):
                run_workload(args, name, masters)
    if "rss100k" in args.only:
        run_workload(args, "rss100k", min(args.masters))
    if "profile" in args.only and 1 in args.masters:
        profile(args, args.count.get("w1", COUNTS["w1"][1 if args.quick else 0]))


def main() -> int:
    args = parse_args()

    def body() -> None:
        disk_figures(BENCH)
        with store_server(args.store) as stores:
            args.stores = stores
            print(
                f"{BENCH} layout={args.layout} runs={args.runs} quick={args.quick}"
                f" counts={args.count or 'default'} store={stores.describe()}",
                flush=True,
            )
            workloads(args)
        print(f"{BENCH} env_loadavg_1m_end={os.getloadavg()[0]:.2f}", flush=True)

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
