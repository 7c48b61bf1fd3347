"""A bounded chaos run inside the suite: `python -m agentflow.testing.chaos` end to end.

One short schedule (``make chaos`` runs longer ones, and .ci/run three of them): real masters,
workers and a storage host in network namespaces, the nemesis, the clients' history, the
checkers. The run must pass every checker and leave its report, its history and the summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agentflow.testing.chaos.history import read_ops, read_storage
from agentflow.testing.chaos.netns import unavailable
from agentflow.testing.chaos.report import RunReport

pytestmark = pytest.mark.slow

SEED = 18
FAULT_SECONDS = 10
RUN_LIMIT_S = 300  # a hang is a failure, with the run's output


def test_a_short_chaos_run_passes_every_checker_and_leaves_its_report(tmp_path: Path) -> None:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    out = tmp_path / "runs"
    argv = [sys.executable, "-m", "agentflow.testing.chaos", "--runs", "1", "--seed", str(SEED)]
    argv += ["--duration", str(FAULT_SECONDS), "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_LIMIT_S, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    run = out / f"seed-{SEED}"
    report = RunReport.from_json(json.loads((run / "report.json").read_text()))
    assert report.verdict == "PASS", report.to_text()
    assert report.schedule and report.faults, "the nemesis did nothing"
    assert {r.name for r in report.results} == {
        "tasks",
        "attempts",
        "locks",
        "messages",
        "reads",
        "convergence",
    }
    ops = read_ops(run / "history.jsonl")
    assert sum(report.op_counts["submit"].values()) == sum(op.f == "submit" for op in ops)
    assert read_storage(run / "storage.jsonl"), "no task or lock holder wrote to the storage host"
    assert f"{SEED}" in (out / "summary.txt").read_text()
    assert "PASS" in done.stdout, done.stdout[-3000:]
