"""Git workspaces (issue 19, design 19 §6): how fast a task gets a worktree of a big repository.

A bare remote of ``--files`` files (default 10,000: 100 directories x 100 files x ~400 B, one
commit on ``main``, written with ``git fast-import``) is made once per run in a temporary
directory. Parts (a), (b) and (d) drive the worker's own code in this process (``Mirrors``,
``add_worktree``, ``remove_worktree`` over ``Git``), called as ``WorkspaceAttempt`` calls them;
part (c) runs real tasks through a cluster.

- (a) ``cold_fetch_s``: the first ``Mirrors.resolve`` of the remote's HEAD into an empty
  workspace directory (the mirror created, ``ls-remote``, one fetch).
- (b) ``--cycles`` prepare + remove cycles at one base, sequentially, then ``--lanes`` at once
  (``_c4`` figures): prepare is what an attempt's ``prepare_ms`` counts (the base resolved
  through the mirror, then ``git worktree add --detach``), remove is ``remove_worktree``; p50,
  p95 and max against the issue's target, each prepare <= 0.5 s. ``worktree_add_*`` is the
  ``worktree add`` alone. Then ``sparse_prepare_*``: a cone of 2 directories.
- (c) ``--tasks`` tasks through 1 master + 4 workers x 2 slots sharing one workspace directory
  (as workers on one machine do), each a shell command that writes one file in its worktree,
  committed and pushed to its own branch (``agentflow/<task id>``), after one warm-up task that
  fetches the mirror: wall seconds, tasks/s, and the ``prepare_ms`` of every task's
  ``workspace_result`` (p50, p95, max).
- (d) ``du -sb`` bytes of the remote, of the mirror cache (after (a) and after (c)) and of one
  worktree.

Targets are printed, never asserted. ``--quick``: 1,000 files, 10 cycles, 10 tasks.
``--checkout-workers N`` runs (a), (b) and (d) with ``git -c checkout.workers=N`` to compare
(the worker sets 0, one checkout worker per core; 1 is git's own sequential default).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cluster import LocalCluster, deadline_guard, figure, percentile, run_main
from agentflow.testing.gitserve import seed_git
from agentflow.worker.gitrun import Git
from agentflow.worker.mirrors import Mirrors
from agentflow.worker.worktree import add_worktree, remove_worktree

BENCH = "workspaces"
TARGET_PREPARE_S = 0.5  # issue 19: a worktree from the cache in <= 0.5 s
FILE_BYTES = 400
CACHE_MAX = 50 << 30  # the worker's default --workspace-cache-max
# name: (full, quick)
DEFAULTS = {"files": (10_000, 1_000), "cycles": (50, 10), "tasks": (50, 10), "sparse": (10, 3)}
CLUSTER_WORKERS, CLUSTER_SLOTS = 4, 2
CLUSTER_LIMIT_S = 900.0
WAIT_S = 600.0


# -- the remote --------------------------------------------------------------------------------


def layout(files: int) -> tuple[int, int]:
    """(directories, files per directory): a square, 100 x 100 for 10,000 files."""
    dirs = max(1, round(files**0.5))
    return dirs, max(1, files // dirs)


def _blob(d: int, f: int) -> bytes:
    """~400 B of text unique to the file (so nothing deltas away)."""
    lines = [f"# d{d:03}/f{f:03}.txt\n".encode()]
    seed = f"{d}/{f}".encode()
    while sum(map(len, lines)) < FILE_BYTES:
        seed = hashlib.sha256(seed).hexdigest().encode()
        lines.append(seed + b"\n")
    return b"".join(lines)[:FILE_BYTES]


def _fast_import_stream(dirs: int, per_dir: int) -> Iterator[bytes]:
    yield b"commit refs/heads/main\n"
    yield b"committer Seed <seed@agentflow.test> 1700000000 +0000\n"
    yield b"data 5\nseed\n\n"
    for d in range(dirs):
        for f in range(per_dir):
            blob = _blob(d, f)
            yield f"M 100644 inline d{d:03}/f{f:03}.txt\ndata {len(blob)}\n".encode()
            yield blob + b"\n"
    yield b"done\n"


def make_big_remote(tmp: Path, files: int) -> tuple[Path, str, list[str]]:
    """A bare ``tmp/remote.git`` with one commit of ``files`` files on main: (path, commit,
    its directories)."""
    bare = tmp / "remote.git"
    seed_git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    dirs, per_dir = layout(files)
    stream = b"".join(_fast_import_stream(dirs, per_dir))
    subprocess.run(
        ["git", "--git-dir", str(bare), "fast-import", "--quiet", "--done"],
        input=stream,
        check=True,
        capture_output=True,
    )
    sha = seed_git("--git-dir", str(bare), "rev-parse", "refs/heads/main")
    return bare, sha, [f"d{d:03}" for d in range(dirs)]


def du_bytes(path: Path) -> int:
    """``du -sb``: apparent bytes under ``path``, directories included."""
    out = subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[0])


# -- (a), (b), (d): the worker's own calls in this process ---------------------------------------


@dataclass
class Cycles:
    prepare_s: list[float]
    add_s: list[float]
    remove_s: list[float]


async def cold_fetch(mirrors: Mirrors, url: str) -> tuple[str, float]:
    start = time.perf_counter()
    sha = await mirrors.resolve(url, None)
    return sha, time.perf_counter() - start


async def _cycle(
    mirrors: Mirrors, git: Git, url: str, path: Path, sparse: tuple[str, ...], out: Cycles
) -> None:
    """One attempt's prepare and cleanup, as WorkspaceAttempt._run_body orders them."""
    async with mirrors.hold(url) as mirror:
        started = time.perf_counter()
        base = await mirrors.resolve(url, None)
        added = time.perf_counter()
        await add_worktree(git, mirror, path, base, sparse)
        ready = time.perf_counter()
        await remove_worktree(git, mirror, path)
        removed = time.perf_counter()
    out.prepare_s.append(ready - started)
    out.add_s.append(ready - added)
    out.remove_s.append(removed - ready)


async def run_cycles(
    mirrors: Mirrors,
    git: Git,
    url: str,
    where: Path,
    n: int,
    lanes: int,
    sparse: tuple[str, ...] = (),
) -> Cycles:
    """``n`` cycles in ``lanes`` concurrent lanes, each worktree at its own path."""
    out = Cycles([], [], [])
    counter = iter(range(n))

    async def lane(k: int) -> None:
        for i in counter:
            await _cycle(mirrors, git, url, where / f"lane{k}-{i}", sparse, out)

    await asyncio.gather(*(lane(k) for k in range(lanes)))
    return out


async def one_worktree_bytes(mirrors: Mirrors, git: Git, url: str, sha: str, path: Path) -> int:
    async with mirrors.hold(url) as mirror:
        await add_worktree(git, mirror, path, sha)
        try:
            return du_bytes(path)
        finally:
            await remove_worktree(git, mirror, path)


def report_series(name: str, samples: list[float], target: float | None = None) -> None:
    samples = sorted(samples)
    for q, label in ((50, "p50"), (95, "p95"), (100, "max")):
        value = percentile(samples, q)
        figure(
            BENCH, f"{name}_{label}_s", value, target=target, higher_is_better=False, fmt="{:.3f}"
        )


class ParallelCheckoutGit(Git):
    """The worker's Git with ``-c checkout.workers=N`` after its own options (the last wins)."""

    def __init__(self, workers: int) -> None:
        super().__init__()
        self.workers = workers

    def argv(self, *args: str, git_dir: Path | None = None) -> list[str]:
        head = super().argv(git_dir=git_dir)
        return [*head, "-c", f"checkout.workers={self.workers}", *args]


async def local_parts(args: argparse.Namespace, tmp: Path, url: str, dirs: list[str]) -> None:
    git = Git() if args.checkout_workers is None else ParallelCheckoutGit(args.checkout_workers)
    workers = "0 (the worker's)" if args.checkout_workers is None else args.checkout_workers
    print(f"{BENCH} checkout_workers={workers}", flush=True)
    mirrors = Mirrors(tmp / "ws", git, CACHE_MAX)
    sha, seconds = await cold_fetch(mirrors, url)
    figure(BENCH, "cold_fetch_s", seconds, fmt="{:.3f}")
    figure(BENCH, "mirror_cache_bytes", du_bytes(mirrors.root), fmt="{:.0f}")
    where = tmp / "ws" / "worktrees" / "bench"
    one = await one_worktree_bytes(mirrors, git, url, sha, where / "one")
    figure(BENCH, "worktree_bytes", one, fmt="{:.0f}")
    for lanes, suffix in ((1, ""), (args.lanes, f"_c{args.lanes}")):
        start = time.perf_counter()
        done = await run_cycles(mirrors, git, url, where, args.cycles, lanes)
        wall = time.perf_counter() - start
        print(f"{BENCH} cycles{suffix}={args.cycles} lanes={lanes} wall_s={wall:.2f}", flush=True)
        report_series(f"prepare{suffix}", done.prepare_s, TARGET_PREPARE_S)
        report_series(f"worktree_add{suffix}", done.add_s)
        report_series(f"remove{suffix}", done.remove_s)
    cone = tuple(dirs[:2])
    sparse = await run_cycles(mirrors, git, url, where, args.sparse_cycles, 1, cone)
    print(f"{BENCH} sparse_cone={','.join(cone)} cycles={args.sparse_cycles}", flush=True)
    report_series("sparse_prepare", sparse.prepare_s, TARGET_PREPARE_S)
    report_series("sparse_remove", sparse.remove_s)


# -- (c): tasks through a cluster ---------------------------------------------------------------


def _task(url: str, i: int) -> dict[str, object]:
    return {
        "command": f"echo task {i} > bench-{i}.txt",
        "title": f"workspaces bench {i}",
        "workspace": {"repo": url},
    }


def cluster_part(args: argparse.Namespace, tmp: Path, url: str) -> None:
    ws_dir = tmp / "cluster-ws"
    with (
        LocalCluster(
            workers=CLUSTER_WORKERS,
            slots=CLUSTER_SLOTS,
            name="workspaces",
            worker_env={"AGENTFLOW_WORKSPACE_DIR": str(ws_dir)},
        ) as cluster,
        deadline_guard(CLUSTER_LIMIT_S, "the cluster part"),
        cluster.client(timeout_s=WAIT_S) as client,
    ):
        warm = client.wait_many(client.submit_many([_task(url, -1)]), timeout_s=WAIT_S)
        _check(client, [t.id for t in warm])
        specs = [_task(url, i) for i in range(args.tasks)]
        start = time.perf_counter()
        ids = client.submit_many(specs)
        client.wait_many(ids, timeout_s=WAIT_S)
        wall = time.perf_counter() - start
        prepare_ms = _check(client, ids)
        cluster.check_alive()
    print(
        f"{BENCH} cluster workers={CLUSTER_WORKERS} slots={CLUSTER_SLOTS} tasks={args.tasks}"
        " (after 1 warm-up task that fetched the mirror)",
        flush=True,
    )
    figure(BENCH, "cluster_wall_s", wall, fmt="{:.2f}")
    figure(BENCH, "cluster_tasks_per_s", args.tasks / wall, fmt="{:.2f}")
    prepare_ms.sort()
    for q, label in ((50, "p50"), (95, "p95"), (100, "max")):
        figure(BENCH, f"cluster_prepare_ms_{label}", percentile(prepare_ms, q), fmt="{:.0f}")
    figure(BENCH, "cluster_mirror_cache_bytes", du_bytes(ws_dir / "mirrors"), fmt="{:.0f}")


def _check(client: object, ids: list[str]) -> list[float]:
    """Every task completed with a pushed commit; their prepare_ms."""
    prepare_ms: list[float] = []
    for task_id in ids:
        info = client.get(task_id)  # type: ignore[attr-defined]
        result = info.workspace_result
        if not info.ok or result is None or not result.pushed or result.prepare_ms is None:
            raise RuntimeError(f"task {task_id} {info.status}: {info.reason}; {result}")
        prepare_ms.append(float(result.prepare_ms))
    return prepare_ms


# -- running -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,000 files, 10 cycles, 10 tasks")
    parser.add_argument("--files", type=int, help="files in the remote (default 10,000)")
    parser.add_argument("--cycles", type=int, help="prepare + remove cycles (default 50)")
    parser.add_argument("--lanes", type=int, default=4, help="cycles at once, second series")
    parser.add_argument("--sparse-cycles", type=int, help="sparse cycles (default 10)")
    parser.add_argument("--tasks", type=int, help="tasks through the cluster (default 50)")
    parser.add_argument("--no-cluster", action="store_true", help="skip part (c)")
    parser.add_argument(
        "--checkout-workers",
        type=int,
        metavar="N",
        help="(a), (b), (d) with git -c checkout.workers=N (0: one per core), to compare",
    )
    args = parser.parse_args()
    mode = 1 if args.quick else 0
    for name, key in (("files", "files"), ("cycles", "cycles"), ("tasks", "tasks")):
        if getattr(args, name) is None:
            setattr(args, name, DEFAULTS[key][mode])
    if args.sparse_cycles is None:
        args.sparse_cycles = DEFAULTS["sparse"][mode]
    for name in ("files", "cycles", "tasks", "lanes", "sparse_cycles"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main() -> int:
    args = parse_args()

    def body() -> None:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"{BENCH} env_loadavg={load} cpus={os.cpu_count()}", flush=True)
        print(f"{BENCH} git={seed_git('version').split()[-1]}", flush=True)
        with tempfile.TemporaryDirectory(prefix="agentflow-bench-ws-") as name:
            tmp = Path(name)
            start = time.perf_counter()
            remote, _sha, dirs = make_big_remote(tmp, args.files)
            dirs_n, per_dir = layout(args.files)
            print(
                f"{BENCH} remote files={dirs_n * per_dir} dirs={dirs_n} file_bytes={FILE_BYTES}"
                f" made_in_s={time.perf_counter() - start:.2f}",
                flush=True,
            )
            figure(BENCH, "remote_bytes", du_bytes(remote), fmt="{:.0f}")
            asyncio.run(local_parts(args, tmp, str(remote), dirs))
            if not args.no_cluster:
                cluster_part(args, tmp, str(remote))
                figure(BENCH, "remote_bytes_after_tasks", du_bytes(remote), fmt="{:.0f}")
        print(f"{BENCH} env_loadavg_1m_end={os.getloadavg()[0]:.2f}", flush=True)

    return run_main(BENCH, body)


if __name__ == "__main__":
    sys.exit(main())
