"""The fast-path benchmark's own logic, without a cluster: reading py-spy's speedscope files,
medians across runs, the table beside the peers, and the SDK-wait fallbacks."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import _peers  # noqa: E402
import _profiles  # noqa: E402
import fast_path  # noqa: E402


def _speedscope(tmp_path: Path) -> Path:
    frames = [
        {"name": "<module>", "file": "/x/bin/agentflow-master", "line": 1},
        {"name": "apply", "file": "/x/src/agentflow/state/machine.py", "line": 10},
        {"name": "dumps", "file": "/usr/lib/python3.11/json/__init__.py", "line": 5},
        {"name": "select", "file": "/usr/lib/python3.11/selectors.py", "line": 7},
    ]
    profiles = [
        {"type": "sampled", "unit": "seconds", "samples": [[0, 1, 2], [0, 1, 2], [0, 3]],
         "weights": [0.5, 0.5, 1.0]},
        {"type": "sampled", "unit": "seconds", "samples": [[0, 1]], "weights": [2.0]},
    ]  # fmt: skip
    path = tmp_path / "p.speedscope.json"
    path.write_text(json.dumps({"shared": {"frames": frames}, "profiles": profiles}))
    return path


def test_speedscope_top_counts_self_and_inclusive_time(tmp_path: Path) -> None:
    covered, hot, ours = _profiles.speedscope_top(_speedscope(tmp_path))
    assert covered == "4.00 s sampled"
    assert [(h.name, h.share) for h in hot] == [("apply", 0.5), ("dumps", 0.25), ("select", 0.25)]
    assert hot[0].where == "agentflow/state/machine.py"
    # Entry points (<module>) are on every stack: left out of the inclusive view.
    assert [(h.name, h.share) for h in ours] == [("apply", 0.75)]


def test_medians_take_each_figure_across_runs() -> None:
    runs = [{"a": 1.0, "b": 9.0}, {"a": 3.0, "b": 1.0}, {"a": 2.0}]
    assert fast_path.medians(runs) == {"a": 2.0}


def test_peers_table_puts_our_figures_beside_the_peers() -> None:
    table = _peers.peers_table(
        {
            "w1_tasks_per_s": "4100.0",
            "w2_p50_ms": "1.10",
            "w2_p99_ms": "2.00",
            "w3_wall_s_3m": "0.5",
        }
    )
    w1 = next(line for line in table.splitlines() if line.startswith("W1"))
    assert "2,167" in w1 and "4100.0" in w1
    w2 = next(line for line in table.splitlines() if line.startswith("W2"))
    assert "1.10 / 2.00" in w2
    w3 = next(line for line in table.splitlines() if line.startswith("W3"))
    assert w3.split()[-4:] == ["-", "0.5", "<=", "0.3"]  # 1 master: none; 3 masters: 0.5


class _Future:
    def __init__(self, value: Any) -> None:
        self.value = value

    def result(self, timeout_s: float | None = None) -> Any:
        return self.value


def test_gather_uses_the_sdk_gather_where_there_is_one() -> None:
    class Old:
        pass

    class New:
        def gather(self, futures: list[_Future]) -> list[Any]:
            return [f.value * 10 for f in futures]

    futures = [_Future(1), _Future(2)]
    assert fast_path.gather(Old(), futures) == ([1, 2], "future.result")
    assert fast_path.gather(New(), futures) == ([10, 20], "client.gather")
