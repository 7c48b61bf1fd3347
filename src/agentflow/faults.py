"""Test-only crash points: a master that SIGKILLs itself at a named point of the task chain.

``AGENTFLOW_TEST_CRASH_AT=point[,point...]``, read once when this module is imported (at the
master's start), arms the points; :func:`reached` then kills the process, with no cleanup, as
``kill -9`` would, the first time an armed point is reached. Unset (always, outside tests), a
point costs one truth test of an empty frozenset. The points:

- ``before_apply``: a committed (fsynced, or on a SQL store: its transaction committed)
  ``SubmitTasks`` entry, before it is applied;
- ``before_push``: an assignment applied, before its frame is queued to the worker;
- ``before_report``: a worker's report received, before it is proposed.

tests/e2e/test_inline_kill9.py kills a master at each and checks the task still runs as its
rules say after a restart.
"""

from __future__ import annotations

import os
import signal

__all__ = ["ARMED", "CRASH_ENV", "POINTS", "reached"]

CRASH_ENV = "AGENTFLOW_TEST_CRASH_AT"
POINTS = frozenset({"before_apply", "before_push", "before_report"})

ARMED: frozenset[str] = frozenset(
    p for p in os.environ.get(CRASH_ENV, "").split(",") if p in POINTS
)


def reached(point: str) -> None:
    """Die here, now, if ``point`` is armed (callers test :data:`ARMED` first)."""
    if point in ARMED:
        os.kill(os.getpid(), signal.SIGKILL)
