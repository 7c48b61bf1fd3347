"""After healing, every master holds the same state, and the cluster serves within its bound.

`views` maps each master to what ``GET /api/v1/cluster?digest=true`` answered after the
cluster healed and went quiet (``state_applied_index``, ``state_digest``), or None when it did
not answer. `recovery_s` is how long after the heal the first write was acknowledged (None:
none was).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentflow.testing.chaos.checkers.common import CheckerResult

__all__ = ["check_convergence"]

NAME = "convergence"
INDEX_KEY = "state_applied_index"
DIGEST_KEY = "state_digest"


def check_convergence(
    views: Mapping[str, Mapping[str, Any] | None], recovery_s: float | None, bound_s: float
) -> CheckerResult:
    anomalies: list[str] = []
    answered = {name: v for name, v in sorted(views.items()) if v is not None}
    silent = sorted(set(views) - set(answered))
    if not views:
        anomalies.append("no master was asked for its state")
    if silent:
        anomalies.append(f"masters {silent} did not answer after healing")
    indexes = {name: v.get(INDEX_KEY) for name, v in answered.items()}
    digests = {name: v.get(DIGEST_KEY) for name, v in answered.items()}
    if len(set(indexes.values())) > 1:
        anomalies.append(f"masters applied different indexes after healing: {indexes}")
    elif len(set(digests.values())) > 1:
        short = {n: str(d)[:16] for n, d in digests.items()}
        anomalies.append(f"state diverged at index {next(iter(indexes.values()))}: {short}")
    if recovery_s is None:
        anomalies.append(f"no write was acknowledged after healing (bound {bound_s:g} s)")
    elif recovery_s > bound_s:
        anomalies.append(
            f"the first write after healing took {recovery_s:.2f} s, over the bound {bound_s:g} s"
        )
    stats = {
        "masters": len(views),
        "answered": len(answered),
        "recovery_ms": -1 if recovery_s is None else round(recovery_s * 1000),
    }
    return CheckerResult.of(NAME, anomalies, stats)
