"""What a worker does when the master refuses its id: stop at once when another connected
process holds it; wait (saying so once) while a crashed holder awaits its loss, then stop."""

from __future__ import annotations

import logging
import os
import socket

import pytest

from agentflow.errors import ConflictError
from agentflow.worker.claim import LOSS_GRACE_S, IdClaim, IdRefusedError, default_worker_id

CONNECTED = IdRefusedError({"t": "error", "detail": "held", "holder": "connected"})


def silent(lost_in_s: float) -> IdRefusedError:
    return IdRefusedError(
        {"t": "error", "holder": "silent", "lost_in_s": lost_in_s, "worker_timeout_s": 30}
    )


def test_the_default_id_is_unique_per_process() -> None:
    assert default_worker_id() == f"{socket.gethostname()}-{os.getpid()}"


def test_an_id_a_connected_worker_holds_stops_this_one_at_once() -> None:
    with pytest.raises(ConflictError, match="w1 is in use by another connected worker") as info:
        IdClaim("w1").refused(CONNECTED, now=0.0)
    assert info.value.exit_code == 5


def test_a_refusal_from_an_older_master_counts_as_connected() -> None:
    with pytest.raises(ConflictError):
        IdClaim("w1").refused(IdRefusedError({"t": "error", "holder": "?"}), now=0.0)


def test_a_crashed_holder_is_waited_for_until_its_loss_then_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    claim = IdClaim("w1")
    with caplog.at_level(logging.WARNING):
        assert claim.refused(silent(12.0), now=100.0) == 10.0  # one retry at most 10 s away
        assert claim.refused(silent(3.0), now=110.0) == 3.0
        assert claim.refused(silent(0.0), now=113.0) == 0.2
    assert len(caplog.records) == 1 and "worker timeout (30s)" in caplog.text
    with pytest.raises(ConflictError, match="not declared lost"):
        claim.refused(silent(0.0), now=100.0 + 12.0 + LOSS_GRACE_S)


def test_a_session_resets_the_wait_and_an_operator_drain_is_told_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    claim = IdClaim("w1")
    claim.refused(silent(1.0), now=0.0)
    claim.welcomed("none")
    assert claim.refused(silent(1.0), now=1000.0) == 1.0  # a new wait, not past the old one
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        claim.welcomed("operator")
        claim.welcomed("operator")  # a reconnect: not said again
        claim.welcomed("none")
        claim.welcomed("operator")  # drained anew: said again
    assert [r.getMessage() for r in caplog.records] == [
        "worker w1 is drained by an operator: it takes no tasks until `agentflow worker "
        "activate w1` (or PATCH /api/v1/workers/w1 state=active)"
    ] * 2


def test_bad_numbers_in_a_refusal_are_read_as_zero() -> None:
    refusal = IdRefusedError({"holder": "silent", "lost_in_s": "soon", "worker_timeout_s": -1})
    assert (refusal.lost_in_s, refusal.worker_timeout_s, refusal.connected) == (0.0, 0.0, False)
