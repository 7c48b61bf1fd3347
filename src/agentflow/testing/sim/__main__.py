"""`python -m agentflow.testing.sim --seeds N --seed-base S --steps M`: run a range of seeds.

Every failing seed is printed with its reason and the exact command that replays it; the
exit status is 1 when any seed failed. `--jobs` spreads seeds over processes, `--jobs 0` over
one per core (each seed is independent, so the outcome does not depend on the number of jobs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

from agentflow.testing.sim._config import ReadMode, SimConfig
from agentflow.testing.sim._simulation import SimResult, run_seed


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agentflow.testing.sim")
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--seed-base", type=int, default=0, help="first seed")
    parser.add_argument("--steps", type=int, default=2000, help="fault-phase steps per seed")
    parser.add_argument("--nodes", type=int, choices=(3, 5), default=None)
    parser.add_argument(
        "--read-mode", choices=[m.value for m in ReadMode], default=ReadMode.READ_INDEX.value
    )
    parser.add_argument("--no-faults", action="store_true", help="a calm network, no nemesis")
    parser.add_argument(
        "--model", choices=("kv", "system"), default="kv", help="what the nodes replicate"
    )
    parser.add_argument(
        "--no-buggify", action="store_true", help="the unbiased fault schedule, no aimed faults"
    )
    # Joiners always start from an empty storage now (founding members are bootstrapped into
    # the log); the flag is still accepted so that older replay commands run unchanged.
    parser.add_argument("--join-empty", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes; 0 means one per CPU core"
    )
    parser.add_argument("--verbose", action="store_true", help="print every seed's outcome")
    return parser.parse_args(argv)


def configs(args: argparse.Namespace) -> list[SimConfig]:
    return [
        SimConfig(
            seed=seed,
            steps=args.steps,
            nodes=args.nodes,
            read_mode=ReadMode(args.read_mode),
            faults=not args.no_faults,
            model=args.model,
            buggify=not args.no_buggify,
        )
        for seed in range(args.seed_base, args.seed_base + args.seeds)
    ]


def _results(todo: list[SimConfig], jobs: int) -> Iterator[SimResult]:
    if jobs == 0:
        jobs = os.cpu_count() or 1
    if jobs <= 1:
        yield from map(run_seed, todo)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(run_seed, todo, chunksize=8)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    todo = configs(args)
    started = time.perf_counter()
    failed = 0
    steps = 0
    for result in _results(todo, args.jobs):
        steps += result.steps
        if not result.ok:
            failed += 1
            print(result.report(), flush=True)
        elif args.verbose:
            print(f"{result.report()} digest {result.digest} {result.stats}", flush=True)
    elapsed = time.perf_counter() - started
    print(
        f"{len(todo) - failed}/{len(todo)} seeds passed ({steps} steps, {elapsed:.1f} s)",
        flush=True,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
