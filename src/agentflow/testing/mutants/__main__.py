"""`python -m agentflow.testing.mutants [NAME ...] --seeds N --steps M --jobs J` (`make mutants`).

Each mutant of the catalogue (or each one named) is run against the same seed budget, split
into chunks, each chunk in a fresh process with the mutant applied by the import hook. A
chunk stops at its first failing seed; the chunks after it are skipped, the ones before it
always run, so the seed printed is the first failing one whatever the number of jobs. Exit
status: 1 when a mutant survived the budget or was refused, 0 otherwise (a mutant pending on
a simulation model that does not exist yet does not fail the run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import agentflow
from agentflow.testing.mutants._catalogue import CATALOGUE, NO_MUTANT, Mutant, by_name
from agentflow.testing.mutants._hook import MutantRefusedError, mutated_source

__all__ = ["Verdict", "main", "run_mutants"]

_SRC = str(Path(agentflow.__file__).resolve().parents[1])


@dataclass(slots=True)
class Verdict:
    """What the budget found out about one mutant."""

    mutant: Mutant
    model: str
    seeds: int
    status: str = "survived"  # found | survived | pending | refused
    seed: int | None = None
    failure: str = ""
    ran: int = 0  # seeds actually run
    _found_chunk: int | None = field(default=None, repr=False)
    _done: set[int] = field(default_factory=set, repr=False)  # chunks finished or skipped
    _printed: bool = field(default=False, repr=False)

    def settled(self, chunks: int) -> bool:
        """Nothing left to run could change the verdict."""
        if self.status in ("pending", "refused"):
            return True
        last = chunks if self._found_chunk is None else self._found_chunk + 1
        return all(k in self._done for k in range(last))

    def line(self) -> str:
        if self.mutant is NO_MUTANT and self.status in ("found", "survived"):
            if self.status == "survived":
                return f"none (the code as written): all {self.seeds} seeds pass"
            return f"none (the code as written): FAILS at seed {self.seed} ({self.failure})"
        if self.status == "found":
            return f"{self.mutant.name}: found by seed {self.seed} ({self.failure})"
        if self.status == "survived":
            return f"{self.mutant.name}: not found in {self.seeds} seeds"
        return f"{self.mutant.name}: {self.status}: {self.failure}"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agentflow.testing.mutants")
    parser.add_argument("names", nargs="*", help="mutants to run (default: the catalogue)")
    parser.add_argument("--seeds", type=int, default=500, help="seed budget per mutant")
    parser.add_argument("--seed-base", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=2000, help="fault-phase steps per seed")
    parser.add_argument("--jobs", type=int, default=0, help="processes at once; 0: one per core")
    parser.add_argument("--chunk", type=int, default=25, help="seeds per process")
    parser.add_argument(
        "--model", default=None, help="run every mutant under this simulation model"
    )
    parser.add_argument(
        "--no-buggify", action="store_true", help="the unbiased fault schedule (to compare)"
    )
    parser.add_argument("--list", action="store_true", help="list the catalogue and exit")
    return parser.parse_args(argv)


def _run_chunk(name: str, base: int, count: int, args: argparse.Namespace, model: str) -> Any:
    cmd = [sys.executable, "-m", "agentflow.testing.mutants._child", name]
    cmd += [str(base), str(count), str(args.steps), model]
    if args.no_buggify:
        cmd.append("--no-buggify")
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": _SRC + (os.pathsep + path if path else "")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"status": "refused", "reason": f"child exited {done.returncode}: {tail}"}
    return json.loads(lines[-1])


def run_mutants(mutants: Sequence[Mutant], args: argparse.Namespace) -> list[Verdict]:
    """Every mutant against the budget, chunks of all mutants interleaved, first chunks first."""
    verdicts = [Verdict(mutant=m, model=args.model or m.model, seeds=args.seeds) for m in mutants]
    chunks = [
        (k, verdict)
        for k in range((args.seeds + args.chunk - 1) // args.chunk)
        for verdict in verdicts
    ]
    lock = threading.Lock()
    total = (args.seeds + args.chunk - 1) // args.chunk

    def work(k: int, verdict: Verdict) -> None:
        with lock:
            settled = verdict.status in ("pending", "refused")
            if settled or (verdict._found_chunk is not None and verdict._found_chunk < k):
                return
        base = args.seed_base + k * args.chunk
        count = min(args.chunk, args.seeds - k * args.chunk)
        outcome = _run_chunk(verdict.mutant.name, base, count, args, verdict.model)
        with lock:
            _record(verdict, k, base, count, outcome)
            verdict._done.add(k)
            if not verdict._printed and verdict.settled(total):
                verdict._printed = True
                print(verdict.line(), flush=True)  # as soon as it is known, in any order

    jobs = args.jobs or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(work, k, verdict) for k, verdict in chunks]:
            future.result()
    return verdicts


def _record(verdict: Verdict, k: int, base: int, count: int, outcome: dict[str, Any]) -> None:
    status = outcome["status"]
    if status in ("pending", "refused"):
        verdict.status, verdict.failure = status, outcome["reason"]
    elif status == "found":
        verdict.ran += outcome["seed"] - base + 1
        if verdict.seed is None or outcome["seed"] < verdict.seed:
            verdict.status, verdict.seed = "found", outcome["seed"]
            verdict.failure, verdict._found_chunk = outcome["failure"], k
    else:
        verdict.ran += count


def _check_snippets(mutants: Sequence[Mutant]) -> list[str]:
    """Refuse up front every mutant whose snippet no longer matches exactly once."""
    problems = []
    for mutant in mutants:
        if mutant is NO_MUTANT:
            continue
        try:
            mutated_source(mutant)
        except MutantRefusedError as exc:
            problems.append(str(exc))
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if args.list:
        for mutant in CATALOGUE:
            print(f"{mutant.name} [{mutant.model}] agentflow/{mutant.file}: {mutant.why}")
        return 0
    try:
        mutants = [by_name(n) for n in args.names] if args.names else list(CATALOGUE)
    except KeyError as exc:
        print(f"error: no mutant {exc.args[0]} (see --list)", file=sys.stderr)
        return 2
    problems = _check_snippets(mutants)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    verdicts = run_mutants(mutants, args)
    print("--", flush=True)
    for verdict in verdicts:
        print(verdict.line(), flush=True)
    pending = sum(v.status == "pending" for v in verdicts)
    print(
        f"{sum(v.status == 'found' for v in verdicts)}/{len(verdicts)} mutants found"
        f"{f', {pending} pending' if pending else ''} "
        f"({args.seeds} seeds x {args.steps} steps, {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    missed = [v for v in verdicts if v.status in ("survived", "refused")]
    if NO_MUTANT in mutants:  # the unmutated code must pass: its "found" is a real bug
        missed += [v for v in verdicts if v.mutant is NO_MUTANT and v.status == "found"]
        missed = [v for v in missed if not (v.mutant is NO_MUTANT and v.status == "survived")]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
