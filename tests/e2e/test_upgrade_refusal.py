"""A log entry of a newer format than the masters read is refused alike on every replica:
recorded with its reason, counted in the metric, and an ``entry`` event on the event stream of
each master; the masters keep serving and agree.

The entry (format 3, a ``CancelTask`` in an envelope this release does not know) is written
into raft.db of the stopped masters after everything they applied, with the term of their last
entry; at start it is committed with the new leader's first entry, as a leader of a later
release would have committed it.
"""

from __future__ import annotations

import json

import httpx
import msgpack
import pytest
from websockets.sync.client import connect

from agentflow.state.envelope import LOG_FORMAT
from tests.e2e.procs import Processes
from tests.security.test_log_restart import _append_garbage, _rejected, _submit

pytestmark = pytest.mark.raft_only  # the entry is written into raft.db

NEWER: bytes = msgpack.packb(
    [LOG_FORMAT + 1, "CancelTask", {"now_ms": 1, "task_id": "t-1"}], use_bin_type=True
)


def _entry_events(url: str, want: int) -> list[dict[str, object]]:
    """The ``entry`` events this master holds (its stream since it started)."""
    events: list[dict[str, object]] = []
    ws_url = "ws" + url.removeprefix("http") + "/api/v1/events?kind=entry&replay=true"
    with connect(ws_url, open_timeout=10) as ws:
        while len(events) < want:
            frame = json.loads(ws.recv(timeout=20))
            assert "error" not in frame, frame
            events += frame.get("events", [])
    return events


def test_a_newer_format_entry_is_refused_on_every_master_with_an_event(procs: Processes) -> None:
    cluster = procs.cluster(3)
    assert _submit(cluster.url(cluster.leader()), "before").status_code == 201
    cluster.wait_converged()
    for name in cluster.masters:
        cluster.terminate(name)
    indexes = {_append_garbage(m.data_dir, NEWER) for m in cluster.masters.values()}
    assert len(indexes) == 1
    (index,) = indexes
    for name in cluster.masters:
        cluster.start(name)
    assert _submit(cluster.url(cluster.leader()), "after").status_code == 201
    cluster.wait_converged()
    why = f"entry format {LOG_FORMAT + 1} is newer than this master reads"
    for name in cluster.masters:
        url = cluster.url(name)
        view = _rejected(url)
        assert view["total"] == 1
        (last,) = view["last"]  # type: ignore[misc]
        assert last["index"] == index and why in last["reason"], last
        (event,) = _entry_events(url, 1)
        assert event == {
            "index": index,
            "kind": "entry",
            "state": "rejected",
            "reason": last["reason"],
        }
        metrics = httpx.get(url + "/metrics", timeout=5).text
        assert "agentflow_rejected_entries_total 1.0" in metrics
