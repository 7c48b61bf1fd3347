"""Run every benchmark in sequence and print a summary table: ``make bench``.

Each benchmark runs as its own subprocess (in its own process group, with a time limit) and
starts and stops its own master and workers on loopback. Figures are read back from the
lines they print (``<bench> <metric>=<value> [target<=X|target>=X MET|NOT MET]``).

Targets are reported, not asserted: the exit status is 0 whether they are met or not, and 1
only when a benchmark failed to run (an ``ERROR`` line, a crash or a time-out). ``--quick``
scales every count down about ten times, for smoke runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _peers  # noqa: E402 - a sibling module: the issue 14 table of the peers' figures

BENCHMARKS = (
    "shell_throughput",
    "round_trip",
    "submit_throughput",
    "memory",
    "dag_analysis",  # no cluster: the pure validation + analysis core (issue 5)
    "dag_layered",  # a 10 x 100 layered workflow through the workflows API (issue 5)
    "placement",  # no cluster: one scheduling pass, 1,000 workers x 10,000 tasks (issue 6)
    "python_tasks",  # Python callables: no-op throughput and round trip (issue 6)
    "locks",  # distributed locks (issue 7)
    "messages",  # agent messaging (issue 8)
    # 3 masters (issue 4)
    "commit_latency",
    "write_throughput",
    "failover",
    "cluster_tasks",
    # the W1-W4 on 1 and 3 masters, the seed's shell rate, RSS, a profile (issue 14)
    "fast_path",
    "workspaces",  # git worktrees of a 10,000-file repository, and 50 tasks in them (issue 19)
)
# Figures without a target that the summary shows anyway (compared with other systems).
HEADLINES = {"dag_layered": ("wall_s", "wall_s_prefetch8")}
COLLEAGUE_BENCHMARKS = ("raft_throughput", "memory_100k")  # run when present
TIME_LIMIT_S = {"quick": 150.0, "full": 480.0}
# Benchmarks that need more: fast_path runs each workload 3 times (medians) on 1 and 3 masters.
# workspaces: 150 worktrees of 10,000 files and 50 tasks; about 6 minutes on this 2-core VM.
LONGER_LIMIT_S = {
    "fast_path": {"quick": 600.0, "full": 2400.0},
    "workspaces": {"quick": 300.0, "full": 1200.0},
}
EXTRA_ARGS = {"fast_path": {"quick": (), "full": ("--runs", "3")}}
STOP_GRACE_S = 15.0

FIGURE = re.compile(
    r"^(?P<bench>[A-Za-z0-9_.-]+) (?P<metric>[A-Za-z0-9_.:-]+)=(?P<value>\S+)"
    r"(?: target(?P<op><=|>=)(?P<target>\S+) (?P<verdict>NOT MET|MET))?(?:\s.*)?$"
)
ERROR = re.compile(r"^(?P<bench>[A-Za-z0-9_.-]+) ERROR (?P<why>.*)$")


@dataclass
class Outcome:
    name: str
    status: str = "ok"
    seconds: float = 0.0
    lines: list[str] = field(default_factory=list)


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the benchmark's whole process group (it cleans up), then SIGKILL."""
    for sig, wait_s in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)
    # The group may outlive its leader briefly (children on their way out).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _pump(proc: subprocess.Popen[str], outcome: Outcome) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        outcome.lines.append(line.rstrip("\n"))


def _takes_quick(name: str, script: Path) -> bool:
    """Ours all take --quick; a colleague's script gets it only if it mentions it."""
    return name in BENCHMARKS or "--quick" in script.read_text(errors="replace")


def run_one(name: str, script: Path, quick: bool, limit_s: float) -> Outcome:
    outcome = Outcome(name)
    mode = "quick" if quick else "full"
    argv = [sys.executable, str(script), *EXTRA_ARGS.get(name, {}).get(mode, ())]
    limit_s = LONGER_LIMIT_S.get(name, {}).get(mode, limit_s)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if quick:
        env["AGENTFLOW_BENCH_QUICK"] = "1"  # for scripts that read it instead of a flag
        if _takes_quick(name, script):
            argv.append("--quick")
    print(f"\n== {name}{' (quick)' if quick else ''} ==", flush=True)
    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=HERE.parent,
        start_new_session=True,  # one group: a time-out or Ctrl-C stops its processes too
    )
    reader = threading.Thread(target=_pump, args=(proc, outcome), daemon=True)
    reader.start()
    try:
        proc.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        outcome.status = f"timed out after {limit_s:g}s"
        _stop_group(proc)
    except KeyboardInterrupt:
        _stop_group(proc)
        raise
    finally:
        reader.join(timeout=5.0)
    outcome.seconds = time.monotonic() - start
    if outcome.status == "ok" and proc.returncode != 0:
        outcome.status = f"exit status {proc.returncode}"
    if outcome.status == "ok" and any(ERROR.match(line) for line in outcome.lines):
        outcome.status = "error"
    return outcome


def environment() -> None:
    """Print what the figures depend on most: cores, Python, and the disk's fsync latency
    (every acknowledged command waits for one; on a slow virtual disk it dominates)."""
    import platform
    import statistics
    import tempfile

    with tempfile.TemporaryDirectory(prefix="agentflow-fsync-") as tmp:
        fd = os.open(os.path.join(tmp, "probe"), os.O_WRONLY | os.O_CREAT)
        try:
            samples_ms = []
            for _ in range(50):
                os.write(fd, b"x" * 512)
                start = time.perf_counter()
                os.fsync(fd)
                samples_ms.append((time.perf_counter() - start) * 1000)
        finally:
            os.close(fd)
    load1, load5, _ = os.getloadavg()
    print(
        f"env cpus={os.cpu_count()} python={platform.python_version()}"
        f" fsync_p50_ms={statistics.median(samples_ms):.2f} fsync_max_ms={max(samples_ms):.2f}"
        f" loadavg_1m={load1:.2f} loadavg_5m={load5:.2f}",
        flush=True,
    )


def summary(outcomes: list[Outcome]) -> str:
    rows = [("benchmark", "figure", "value", "target", "verdict")]
    for outcome in outcomes:
        for line in outcome.lines:
            m = FIGURE.match(line)
            if m and m["verdict"]:
                rows.append(
                    (m["bench"], m["metric"], m["value"], f"{m['op']}{m['target']}", m["verdict"])
                )
            elif m and m["metric"] in HEADLINES.get(m["bench"], ()):
                rows.append((m["bench"], m["metric"], m["value"], "-", "(compared)"))
            elif (e := ERROR.match(line)) is not None:
                rows.append((e["bench"], "ERROR", "-", "-", e["why"][:60]))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    out = ["", "== summary =="]
    for i, row in enumerate(rows):
        out.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    fast = {
        m["metric"]: m["value"]
        for outcome in outcomes
        if outcome.name == "fast_path"
        for line in outcome.lines
        if (m := FIGURE.match(line)) and m["bench"] == "fast_path"
    }
    if fast:
        out.append(_peers.peers_table(fast))
    out.append("")
    for outcome in outcomes:
        out.append(f"{outcome.name}: {outcome.status} in {outcome.seconds:.1f}s")
        if not any(FIGURE.match(line) or ERROR.match(line) for line in outcome.lines):
            # A script in another format (a colleague's): show its last word on the matter.
            last = next((line for line in reversed(outcome.lines) if line.strip()), "")
            out.append(f"    {last[:160]}")
    return "\n".join(out)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # stop the running benchmark's group, then exit
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="about 10x smaller counts")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these benchmarks")
    args = parser.parse_args()
    limit_s = TIME_LIMIT_S["quick" if args.quick else "full"]
    names = [*BENCHMARKS, *(n for n in COLLEAGUE_BENCHMARKS if (HERE / f"{n}.py").exists())]
    if args.only:
        names = [n for n in names if n in args.only]
    outcomes: list[Outcome] = []
    environment()
    try:
        for name in names:
            outcomes.append(run_one(name, HERE / f"{name}.py", args.quick, limit_s))
    except KeyboardInterrupt:
        print(summary(outcomes), flush=True)
        print("interrupted", flush=True)
        return 130
    print(summary(outcomes), flush=True)
    environment()  # again: a virtual disk's fsync latency can change during the run
    return 0 if all(o.status == "ok" for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
