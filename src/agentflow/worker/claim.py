"""A worker's claim on its id: the default id, what to do when the master refuses it, and
the one warning that an operator's drain keeps it idle.

A worker id has one live instance (see the master's ``api.sessions``). A refusal names who
holds the id: ``connected``, another process with a session now, which waiting cannot change,
so this one stops with one line; or ``silent``, a previous instance that went away (a crash,
most likely) still holding attempts, which the master declares lost within its worker timeout.
Then this one says so once and retries until that deadline has passed, and only then stops.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from typing import Any

from agentflow.errors import ConflictError

__all__ = ["IdClaim", "IdRefusedError", "default_worker_id"]

log = logging.getLogger(__name__)

LOSS_GRACE_S = 5.0  # beyond the master's loss deadline: its loss sweep and our retry jitter
RETRY_MIN_S = 0.2
RETRY_MAX_S = 10.0


def default_worker_id() -> str:
    """``HOSTNAME-PID``: unique per process, so two default workers on one host both work."""
    return f"{socket.gethostname()}-{os.getpid()}"


class IdRefusedError(Exception):
    """The master refused the session: the worker id is held by another instance."""

    def __init__(self, frame: Mapping[str, Any]) -> None:
        super().__init__(str(frame.get("detail")))
        self.connected = frame.get("holder") != "silent"
        self.lost_in_s = _seconds(frame.get("lost_in_s"))
        self.worker_timeout_s = _seconds(frame.get("worker_timeout_s"))


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        return 0.0
    return min(float(value), 24 * 3600.0)


class IdClaim:
    """Decides, refusal by refusal, whether to retry (and when) or to stop."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self._wait_until: float | None = None  # waiting for the old holder to be declared lost
        self._drain_told = False

    def welcomed(self, drain: object) -> None:
        """A session began; ``drain`` is the welcome's word on who drains this worker."""
        self._wait_until = None
        if drain != "operator":
            self._drain_told = False
        elif not self._drain_told:  # once, not on every reconnect
            self._drain_told = True
            log.warning(
                "worker %s is drained by an operator: it takes no tasks until "
                "`agentflow worker activate %s` (or PATCH /api/v1/workers/%s state=active)",
                *(self.worker_id,) * 3,
            )

    def refused(self, refusal: IdRefusedError, now: float) -> float:
        """Seconds until the next try; :class:`ConflictError` when waiting cannot help."""
        if refusal.connected:
            raise ConflictError(
                f"worker id {self.worker_id} is in use by another connected worker; "
                "stop that one or start this one with another --worker-id",
                worker_id=self.worker_id,
            )
        if self._wait_until is None:
            wait_s = refusal.lost_in_s + LOSS_GRACE_S
            self._wait_until = now + wait_s
            log.warning(
                "worker id %s is still held by its previous instance, which went away holding "
                "tasks; the master declares it lost after its worker timeout (%gs): waiting up "
                "to %.0fs",
                self.worker_id,
                refusal.worker_timeout_s,
                wait_s,
            )
        elif now >= self._wait_until:
            raise ConflictError(
                f"worker id {self.worker_id} is still held by its previous instance, not "
                f"declared lost after the master's worker timeout ({refusal.worker_timeout_s:g}s)",
                worker_id=self.worker_id,
            )
        return min(max(refusal.lost_in_s, RETRY_MIN_S), RETRY_MAX_S)
