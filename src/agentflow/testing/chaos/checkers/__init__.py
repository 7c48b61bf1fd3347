"""Checkers over a chaos run's history: pure functions of the client operations and the storage
host's records (no I/O, no clock), each returning a `CheckerResult` whose anomalies are lines
a human can act on.

- `check_tasks`: every acknowledged task ends by its rule and never vanishes; one key, one task;
- `check_attempts`: a task's attempts never overlap unless fenced off; completions belong to
  the attempt that finished;
- `check_locks`: lock tokens rise in real time; holders never overlap in the fenced file;
- `check_messages`: delivered at least once, in order per pair, never after the ack;
- `check_reads`: parked tasks' priorities are linearizable registers; task state never goes back;
- `check_convergence`: equal digests after healing, recovery within the bound.

Each is linear or n log n in the history, except the linearizability search, bounded per
register (its undecided registers are `inconclusive`, never a pass).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentflow.testing.chaos.checkers.attempts import check_attempts
from agentflow.testing.chaos.checkers.common import CheckerResult
from agentflow.testing.chaos.checkers.convergence import check_convergence
from agentflow.testing.chaos.checkers.locks import check_locks
from agentflow.testing.chaos.checkers.messages import check_messages
from agentflow.testing.chaos.checkers.reads import check_reads
from agentflow.testing.chaos.checkers.tasks import check_tasks
from agentflow.testing.chaos.history import Op, StorageRecord

__all__ = [
    "CheckerResult",
    "Convergence",
    "check_all",
    "check_attempts",
    "check_convergence",
    "check_locks",
    "check_messages",
    "check_reads",
    "check_tasks",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Convergence:
    """What `check_convergence` takes: each master's view after healing, the recovery time."""

    views: Mapping[str, Mapping[str, Any] | None]
    recovery_s: float | None
    bound_s: float


def check_all(
    ops: Sequence[Op],
    storage: Sequence[StorageRecord],
    *,
    convergence: Convergence | None = None,
) -> list[CheckerResult]:
    results = [
        check_tasks(ops, storage),
        check_attempts(ops, storage),
        check_locks(ops, storage),
        check_messages(ops, storage),
        check_reads(ops, storage),
    ]
    if convergence is not None:
        results.append(
            check_convergence(convergence.views, convergence.recovery_s, convergence.bound_s)
        )
    return results
