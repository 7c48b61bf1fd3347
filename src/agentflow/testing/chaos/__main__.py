"""`python -m agentflow.testing.chaos --runs N --seed S`: N chaos runs, then a summary table.

Run k uses seed S+k, in a process of its own (`agentflow.testing.chaos.run`), with its files
under ``--out/seed-<S+k>/``. Without ``--seed`` the first seed is drawn from the clock and
printed, so any run can be repeated with ``make chaos RUNS=1 SEED=<seed>``. The exit status is
0 when every run passed every checker, 1 when a run found an anomaly, 2 when a run broke (or
namespaces cannot be made here).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from agentflow.testing.chaos.netns import unavailable
from agentflow.testing.chaos.report import RunReport, summary_table

RUN_SLACK_S = 420.0  # setup, healing, draining, final reads and checking, beyond the faults
EXIT_ANOMALY = 1
EXIT_BROKEN = 2


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agentflow.testing.chaos")
    parser.add_argument("--runs", type=int, default=3, help="how many schedules to run")
    parser.add_argument("--seed", type=int, default=None, help="first seed (default: clock)")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of faults per run")
    parser.add_argument("--faults", default="", help="comma-separated fault kinds (default: all)")
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("chaos-runs"), help="where runs write")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.duration <= 0:
        parser.error("--runs must be at least 1 and --duration positive")
    return args


def _one(args: argparse.Namespace, seed: int) -> tuple[int, RunReport | None]:
    out = args.out / f"seed-{seed}"
    argv = [
        sys.executable,
        "-m",
        "agentflow.testing.chaos.run",
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--duration",
        str(args.duration),
        "--clients",
        str(args.clients),
    ]
    if args.faults:
        argv += ["--faults", args.faults]
    try:
        code = subprocess.run(argv, check=False, timeout=args.duration + RUN_SLACK_S).returncode
    except subprocess.TimeoutExpired:
        print(f"chaos: run {seed} did not finish in time", file=sys.stderr)
        code = EXIT_BROKEN
    report = out / "report.json"
    return code, RunReport.from_json(json.loads(report.read_text())) if report.exists() else None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    reason = unavailable()
    if reason is not None:
        print(f"chaos: cannot make network namespaces here: {reason}", file=sys.stderr)
        return EXIT_BROKEN
    first = args.seed if args.seed is not None else int(time.time()) % 1_000_000
    print(f"chaos: {args.runs} run(s) from seed {first}; repeat with SEED={first}", flush=True)
    worst = 0
    reports: list[RunReport] = []
    for seed in range(first, first + args.runs):
        code, report = _one(args, seed)
        worst = max(worst, code if code in (0, EXIT_ANOMALY) else EXIT_BROKEN)
        if report is not None:
            reports.append(report)
        else:
            print(f"chaos: run {seed} left no report (exit {code})", file=sys.stderr)
    table = summary_table(reports)
    print(table, flush=True)
    (args.out / "summary.txt").write_text(table + "\n")
    return worst


if __name__ == "__main__":
    sys.exit(main())
