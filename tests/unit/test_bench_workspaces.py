"""The workspaces benchmark (issue 19): its remote is what it says, and a tiny run prints every
figure. No figure is checked against a time: targets live in the benchmark's output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import run_all  # noqa: E402
import workspaces  # noqa: E402
from agentflow.testing.gitserve import seed_git  # noqa: E402

SERIES = ("p50_s", "p95_s", "max_s")
FIGURES = (
    "remote_bytes",
    "cold_fetch_s",
    "mirror_cache_bytes",
    "worktree_bytes",
    *(f"{name}_{q}" for name in ("prepare", "worktree_add", "remove") for q in SERIES),
    *(f"{name}_c4_{q}" for name in ("prepare", "worktree_add", "remove") for q in SERIES),
    *(f"{name}_{q}" for name in ("sparse_prepare", "sparse_remove") for q in SERIES),
    "cluster_wall_s",
    "cluster_tasks_per_s",
    "cluster_prepare_ms_p50",
    "cluster_prepare_ms_p95",
    "cluster_prepare_ms_max",
    "cluster_mirror_cache_bytes",
    "remote_bytes_after_tasks",
)
TARGETED = ("prepare_", "prepare_c4_", "sparse_prepare_")


def test_the_remote_is_dirs_by_files_of_400_bytes(tmp_path: Path) -> None:
    assert workspaces.layout(10_000) == (100, 100)
    bare, sha, dirs = workspaces.make_big_remote(tmp_path, 36)
    assert dirs == [f"d{d:03}" for d in range(6)]
    listed = seed_git("--git-dir", str(bare), "ls-tree", "-r", "--long", sha).splitlines()
    assert len(listed) == 36
    assert {int(line.split()[3]) for line in listed} == {workspaces.FILE_BYTES}
    assert seed_git("--git-dir", str(bare), "rev-parse", "main") == sha


def test_run_all_runs_it() -> None:
    assert "workspaces" in run_all.BENCHMARKS
    assert "workspaces" in run_all.LONGER_LIMIT_S


@pytest.mark.slow
def test_a_tiny_run_prints_every_figure() -> None:
    argv = [sys.executable, str(BENCHMARKS / "workspaces.py"), "--files", "40", "--cycles", "4"]
    argv += ["--sparse-cycles", "2", "--tasks", "3"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    found = {}
    for line in lines:
        m = run_all.FIGURE.match(line)
        if m and m["bench"] == "workspaces":
            found[m["metric"]] = m
    missing = [name for name in FIGURES if name not in found]
    assert not missing, done.stdout
    for name in FIGURES:
        float(found[name]["value"])  # a number, whatever it is
        has_target = name.startswith(TARGETED) and name.endswith(SERIES)
        assert (found[name]["target"] == "0.5") == has_target, name
    assert not any(run_all.ERROR.match(line) for line in lines)
