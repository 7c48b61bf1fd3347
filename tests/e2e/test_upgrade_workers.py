"""Worker frames across versions: the master answers a worker in the lower of the two
protocol versions, so a worker of the previous release and one of the next both get frames
they read."""

from __future__ import annotations

import pytest

from agentflow import wire
from tests.e2e.procs import Processes
from tests.security.workers_raw import open_session


@pytest.mark.parametrize(
    ("worker_protocol", "answered"),
    [(1, 1), (wire.PROTOCOL_VERSION, wire.PROTOCOL_VERSION), (99, wire.PROTOCOL_VERSION)],
)
def test_the_welcome_names_the_lower_protocol_version(
    procs: Processes, worker_protocol: int, answered: int
) -> None:
    _proc, url = procs.master()
    ws, welcome = open_session(url, "w1", protocol=worker_protocol)
    try:
        assert welcome["t"] == "welcome", welcome
        assert welcome["protocol"] == answered
    finally:
        ws.close()
