"""One chaos run in a process of its own: `python -m agentflow.testing.chaos.run --seed S --out D`.

The run builds a lab (a host per master, per worker, one for the storage host and one for the
clients, which this process itself moves into), starts the cluster, lets the clients record a
history while the nemesis applies the seed's schedule, heals everything, measures how long the
cluster takes to acknowledge a write again, reads every task, inbox and lock one last time, and
checks the whole history. It writes into DIR: ``schedule.txt``, ``nemesis.log``,
``history.jsonl``, ``storage.jsonl``, ``report.txt`` and ``report.json``; the exit status is
0 when every checker passed, 1 when one found an anomaly, 2 when the run itself broke.

A run is its own process because it leaves the root network namespace for its clients' host,
and because whatever it started must die with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.client import Client
from agentflow.testing.chaos.checkers import Convergence, check_all
from agentflow.testing.chaos.checkers.common import PARKED_GROUP
from agentflow.testing.chaos.cluster import ChaosCluster
from agentflow.testing.chaos.history import Recorder, write_jsonl
from agentflow.testing.chaos.nemesis import KINDS, Fault, Nemesis, schedule
from agentflow.testing.chaos.netns import Lab, unavailable
from agentflow.testing.chaos.report import RunReport
from agentflow.testing.chaos.storage import StorageClient
from agentflow.testing.chaos.workload import Workload

STORAGE_PORT = 7070
API_TOKEN = "chaos-api-token"  # the masters bind non-loopback addresses: a token is required
FAILOVER_BOUND_S = 10.0  # heal -> first acknowledged write; the README's failover is ~1.3 s
RECOVERY_DEADLINE_S = 60.0
QUIET_DEADLINE_S = 90.0  # for the queue to drain after healing
CONVERGE_DEADLINE_S = 60.0
STOP_DEADLINE_S = 30.0
FINAL_READS_S = 60.0
EXIT_ANOMALY = 1
EXIT_BROKEN = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class RunConfig:
    seed: int
    out: Path
    duration_s: float = 60.0
    masters: int = 3
    workers: int = 2
    clients: int = 5
    kinds: frozenset[str] | None = None
    failover_bound_s: float = FAILOVER_BOUND_S


def _parse(argv: Sequence[str] | None) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m agentflow.testing.chaos.run")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for the run's files")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults")
    parser.add_argument("--masters", type=int, default=3, choices=(3, 5))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--faults", default="", help="comma-separated fault kinds (default: all)")
    args = parser.parse_args(argv)
    kinds = frozenset(k for k in args.faults.split(",") if k) or None
    if kinds is not None and not kinds <= frozenset(KINDS):
        parser.error(f"unknown fault kinds {sorted(kinds - frozenset(KINDS))}; known: {KINDS}")
    return RunConfig(
        seed=args.seed,
        out=args.out,
        duration_s=args.duration,
        masters=args.masters,
        workers=args.workers,
        clients=args.clients,
        kinds=kinds,
    )


class _Log:
    """The run's own narrative: printed and kept in ``nemesis.log`` with seconds since start."""

    def __init__(self, path: Path) -> None:
        self._started = time.monotonic()
        self._out = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._mutex = threading.Lock()

    def __call__(self, line: str) -> None:
        stamped = f"{time.monotonic() - self._started:8.2f}s  {line}"
        with self._mutex:
            self._out.write(stamped + "\n")
            self._out.flush()
        print(stamped, flush=True)

    def close(self) -> None:
        self._out.close()


def _until(predicate: Callable[[], bool], deadline_s: float, pause_s: float = 0.2) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(pause_s)
    return False


def _recovery_s(urls: list[str], token: str | None, deadline_s: float) -> float | None:
    """Seconds from now until the cluster acknowledges a write (None: not within the deadline)."""
    started = time.monotonic()
    with Client(urls, token=token, retry_for_s=1.0, timeout_s=2.0) as client:

        def wrote() -> bool:
            try:
                client.submit("true", group="parked", idempotency_key=f"recovery-{started}")
            except Exception:
                return False
            return True

        if not _until(wrote, deadline_s, pause_s=0.05):
            return None
    return time.monotonic() - started


def _drained(urls: list[str], token: str | None, deadline_s: float) -> bool:
    """Whether, within the deadline, no task of the workers' group is left to run."""
    with Client(urls, token=token, retry_for_s=1.0, timeout_s=5.0) as client:

        def quiet() -> bool:
            try:
                stats: dict[str, Any] = client.queue_stats()
            except Exception:
                return False
            return _busy(stats) == 0

        return _until(quiet, deadline_s)


def _busy(stats: dict[str, Any]) -> int:
    """Tasks still to run: queued ones outside the parked group, and every one in flight."""
    parked = int(stats.get("by_group", {}).get(PARKED_GROUP, 0))
    waiting = int(stats.get("queued", 0)) - parked
    return waiting + sum(int(stats.get(s, 0)) for s in ("pending", "assigned", "running"))


def run(cfg: RunConfig) -> int:
    cfg.out.mkdir(parents=True, exist_ok=True)
    log = _Log(cfg.out / "nemesis.log")
    try:
        return _run(cfg, log)
    finally:
        log.close()


def _run(cfg: RunConfig, log: _Log) -> int:
    faults = schedule(
        cfg.seed,
        duration_s=cfg.duration_s,
        masters=[f"m{i}" for i in range(1, cfg.masters + 1)],
        workers=[f"w{i}" for i in range(1, cfg.workers + 1)],
        kinds=sorted(cfg.kinds) if cfg.kinds else None,
        bystanders=["storage"],
    )
    (cfg.out / "schedule.txt").write_text("".join(f.describe() + "\n" for f in faults))
    log(f"seed {cfg.seed}: {len(faults)} faults over {cfg.duration_s:g}s")
    with Lab(cfg.out / "lab") as lab:
        ctl = lab.add_host("ctl")
        store = lab.add_host("storage")
        lab.enter(ctl.name)
        store.spawn(
            [
                sys.executable,
                "-m",
                "agentflow.testing.chaos.storage",
                "--host",
                store.ip,
                "--port",
                str(STORAGE_PORT),
                "--records",
                str(cfg.out / "storage.jsonl"),
            ],
            cfg.out / "storage.log",
            None,
        )
        storage = StorageClient(f"http://{store.ip}:{STORAGE_PORT}")
        cluster = ChaosCluster(
            lab, cfg.out / "cluster", masters=cfg.masters, workers=cfg.workers, api_token=API_TOKEN
        )
        with contextlib.closing(cluster):
            cluster.start()
            log(f"cluster up, leader {cluster.leader()}; storage at {storage.url}")
            return _exercise(cfg, log, lab=lab, cluster=cluster, storage=storage, faults=faults)


def _exercise(
    cfg: RunConfig,
    log: _Log,
    *,
    lab: Lab,
    cluster: ChaosCluster,
    storage: StorageClient,
    faults: list[Fault],
) -> int:
    started = time.monotonic()
    recorder = Recorder()
    token = cluster.api_token
    workload = Workload(
        cluster.urls, storage.url, recorder, seed=cfg.seed, token=token, clients=cfg.clients
    )
    nemesis = Nemesis(cluster, lab, faults, log)
    stop = threading.Event()
    workload.start()
    faulting = threading.Thread(target=nemesis.run, args=(stop,), name="nemesis", daemon=True)
    faulting.start()
    time.sleep(cfg.duration_s)
    stop.set()
    faulting.join()
    nemesis.heal_all()
    log("healed: every link restored, every process running, every disk freed")
    recovery = _recovery_s(cluster.urls, token, RECOVERY_DEADLINE_S)
    log(f"first acknowledged write after healing: {_seconds(recovery)}")
    workload.stop(STOP_DEADLINE_S)
    drained = _drained(cluster.urls, token, QUIET_DEADLINE_S)
    log("the workers' queue drained" if drained else "the queue did not drain in time")
    workload.final_reads(FINAL_READS_S)
    views = _converged_views(cluster, log)
    ops = recorder.ops()
    records = storage.records()
    write_jsonl(cfg.out / "history.jsonl", ops)
    convergence = Convergence(views=views, recovery_s=recovery, bound_s=cfg.failover_bound_s)
    results = check_all(ops, records, convergence=convergence)
    report = RunReport.build(
        seed=cfg.seed,
        schedule=[f.describe() for f in faults],
        faults=[(a.started_s, a.describe().split(None, 1)[1]) for a in nemesis.applied],
        ops=ops,
        results=results,
        recovery_s=recovery,
        duration_s=time.monotonic() - started,
    )
    (cfg.out / "report.txt").write_text(report.to_text())
    (cfg.out / "report.json").write_text(json.dumps(report.to_json(), indent=1))
    print(report.to_text(), flush=True)
    return 0 if report.verdict != "FAIL" else EXIT_ANOMALY


def _converged_views(cluster: ChaosCluster, log: _Log) -> dict[str, Any]:
    try:
        digest = cluster.wait_converged(CONVERGE_DEADLINE_S)
    except Exception as exc:  # the checker reports the views; keep the reason in the log
        log(f"masters did not converge: {exc}")
    else:
        log(f"every master applied the same index with digest {digest}")
    return dict(cluster.statuses())


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}s"


def main(argv: Sequence[str] | None = None) -> int:
    cfg = _parse(argv)
    reason = unavailable()
    if reason is not None:
        print(f"chaos: cannot make network namespaces here: {reason}", file=sys.stderr)
        return EXIT_BROKEN
    try:
        return run(cfg)
    except Exception as exc:
        print(f"chaos: run {cfg.seed} broke: {type(exc).__name__}: {exc}", file=sys.stderr)
        raise


if __name__ == "__main__":
    sys.exit(main())
