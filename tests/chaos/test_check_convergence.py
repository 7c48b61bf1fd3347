"""check_convergence: after healing every master answers with one applied index and digest,
and the cluster acknowledged a write within the failover bound."""

from __future__ import annotations

from typing import Any

from agentflow.testing.chaos.checkers import check_convergence


def view(index: int = 120, digest: str = "ab" * 32) -> dict[str, Any]:
    return {"node_id": "m", "state_applied_index": index, "state_digest": digest}


def test_equal_masters_that_recovered_in_time_pass() -> None:
    result = check_convergence({"m1": view(), "m2": view(), "m3": view()}, 2.5, 10.0)
    assert result.ok, result.anomalies
    assert result.stats == {"masters": 3, "answered": 3, "recovery_ms": 2500}


def test_a_diverged_digest_is_an_anomaly() -> None:
    views = {"m1": view(), "m2": view(digest="cd" * 32), "m3": view()}
    (line,) = check_convergence(views, 1.0, 10.0).anomalies
    assert line.startswith("state diverged at index 120") and "'m2': 'cdcdcdcd" in line


def test_different_indexes_and_a_silent_master_are_anomalies() -> None:
    lines = check_convergence({"m1": view(120), "m2": view(119), "m3": None}, 1.0, 10.0).anomalies
    assert lines == (
        "masters ['m3'] did not answer after healing",
        "masters applied different indexes after healing: {'m1': 120, 'm2': 119}",
    )


def test_a_slow_or_missing_recovery_is_an_anomaly() -> None:
    views = {"m1": view()}
    (slow,) = check_convergence(views, 12.345, 10.0).anomalies
    assert slow == "the first write after healing took 12.35 s, over the bound 10 s"
    (never,) = check_convergence(views, None, 10.0).anomalies
    assert never == "no write was acknowledged after healing (bound 10 s)"
