"""The benchmarks on a SQL store (``--store postgresql|mysql``): a tiny run of each prints its
figures, on 1 master and on 2 sharing one database, and the log timings read from /metrics.
No figure is checked against a time: targets live in the benchmarks' output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentflow.testing.sqlserve import unavailable

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _stores  # noqa: E402

TIMINGS = ("appends", "append_mean_ms", "entries_per_append", "commit_mean_ms", "apply_mean_ms")


def _run(*argv: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    done = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " ERROR " not in done.stdout, done.stdout[-3000:]
    return done.stdout


def _figures(out: str) -> dict[str, str]:
    found = {}
    for line in out.splitlines():
        _bench, _, rest = line.partition(" ")
        name, eq, value = rest.partition("=")
        if eq and " " not in name:
            found[name] = value.split()[0]
    return found


def _skip_without(store: str) -> None:
    why = unavailable(store)
    if why is not None:
        pytest.skip(why)


def test_log_timings_read_the_masters_histograms(monkeypatch: pytest.MonkeyPatch) -> None:
    text = "\n".join(
        [
            "agentflow_raft_fsync_seconds_count 10.0",
            "agentflow_raft_fsync_seconds_sum 0.05",
            "agentflow_raft_commit_seconds_count 40.0",
            "agentflow_raft_commit_seconds_sum 0.4",
            "agentflow_raft_apply_seconds_count 10.0",
            "agentflow_raft_apply_seconds_sum 0.01",
        ]
    )

    class Answer:
        pass

    answer = Answer()
    answer.text = text  # type: ignore[attr-defined]
    monkeypatch.setattr(_stores.httpx, "get", lambda *_a, **_k: answer)
    got = _stores.log_timings("http://m", "w1_log")
    assert got == {
        "w1_log_appends": 10.0,
        "w1_log_append_mean_ms": pytest.approx(5.0),
        "w1_log_entries_per_append": 4.0,
        "w1_log_commit_mean_ms": pytest.approx(10.0),
        "w1_log_apply_mean_ms": pytest.approx(1.0),
    }


@pytest.mark.slow
@pytest.mark.parametrize("store", ["postgresql", "mysql"])
def test_fast_path_on_a_sql_store_prints_every_figure(store: str) -> None:
    _skip_without(store)
    out = _run(
        str(BENCHMARKS / "fast_path.py"), "--store", store, "--masters", "1", "2",
        "--only", "w2", "w4", "--count", "w2=10", "--count", "w4=10",
    )  # fmt: skip
    assert f"store={store} on 127.0.0.1:" in out
    figures = _figures(out)
    for suffix in ("", "_2m"):
        for name in ("w2_p50_ms", "w2_p99_ms", "w4_tasks_per_s"):
            assert name + suffix in figures, out[-3000:]
        for timing in TIMINGS:
            assert f"w2_log_{timing}{suffix}" in figures, out[-3000:]
    assert float(figures["w4_log_appends"]) > 0


@pytest.mark.slow
@pytest.mark.parametrize("store", ["postgresql", "mysql"])
def test_commit_latency_on_a_sql_store_prints_every_figure(store: str) -> None:
    _skip_without(store)
    out = _run(str(BENCHMARKS / "commit_latency.py"), "--store", store, "--quick")
    assert f"store={store} on 127.0.0.1:" in out
    figures = _figures(out)
    for name in ("p50_ms_2m", "p99_ms_2m", "p50_ms_2m_via_follower", "p50_ms_1m"):
        assert name in figures, out[-3000:]
    for timing in TIMINGS:
        assert f"log_{timing}_2m" in figures and f"log_{timing}_1m" in figures, out[-3000:]
    assert float(figures["writes_1m"]) > 0


def test_two_masters_are_for_a_sql_store() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "fast_path.py"), "--masters", "2"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "--masters 2 is for a SQL store" in done.stderr
