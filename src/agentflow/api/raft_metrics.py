"""Raft and latency metrics of one master, read at scrape time.

Gauges come from the log's status (what ``GET /api/v1/cluster`` shows); histograms and counts
from what the shell measured (:class:`agentflow.cluster.timings.RaftTimings`, the request and
task timings of :mod:`agentflow.api.request_metrics` and :mod:`agentflow.api.task_metrics`).
The ``follower`` label takes the cluster's members (a handful); it is only on the leader.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from agentflow.api.request_metrics import RequestTimings
from agentflow.api.task_metrics import TaskTimings
from agentflow.cluster.seam import MasterLog
from agentflow.histograms import Histogram, HistogramVec

__all__ = ["histogram_family", "latency_metrics", "raft_metrics"]


def histogram_family(name: str, doc: str, source: Histogram | HistogramVec) -> Metric:
    """``source`` as a Prometheus histogram family (seconds)."""
    if isinstance(source, Histogram):
        family = HistogramMetricFamily(name, doc)
        buckets, _count, total = source.cumulative()
        family.add_metric([], buckets, sum_value=total)
        return family
    family = HistogramMetricFamily(name, doc, labels=list(source.labels))
    for values, hist in source.items():
        buckets, _count, total = hist.cumulative()
        family.add_metric(list(values), buckets, sum_value=total)
    return family


def raft_metrics(log: MasterLog) -> Iterator[Metric]:
    status = log.status()
    is_leader = log.is_leader
    yield GaugeMetricFamily("agentflow_raft_term", "Current Raft term", value=status["term"])
    yield GaugeMetricFamily(
        "agentflow_raft_is_leader", "1 on the leader, else 0", value=int(is_leader)
    )
    yield GaugeMetricFamily(
        "agentflow_raft_has_leader",
        "1 while this master knows a leader, else 0",
        value=int(status["leader_id"] is not None),
    )
    yield GaugeMetricFamily(
        "agentflow_raft_commit_index",
        "Highest log index known committed",
        value=status["commit_index"],
    )
    yield GaugeMetricFamily(
        "agentflow_raft_last_index", "Last index in this master's log", value=status["last_index"]
    )
    yield GaugeMetricFamily(
        "agentflow_raft_snapshot_index",
        "Index of the latest snapshot",
        value=status["snapshot_index"],
    )
    yield GaugeMetricFamily(
        "agentflow_raft_members", "Members of the configuration", value=len(status["members"])
    )
    yield GaugeMetricFamily(
        "agentflow_log_format_written",
        "Log entry format this master writes as leader: the highest every member reads",
        value=status["formats"]["log_written"],
    )
    lag = GaugeMetricFamily(
        "agentflow_raft_follower_lag_entries",
        "Entries a follower's log is behind the leader's (on the leader only)",
        labels=["follower"],
    )
    contact = GaugeMetricFamily(
        "agentflow_raft_follower_last_contact_seconds",
        "Seconds since the leader last heard from a follower (on the leader only)",
        labels=["follower"],
    )
    for member in status["members"]:
        if not is_leader or member["id"] == status["node_id"]:
            continue
        if member["lag"] is not None:
            lag.add_metric([member["id"]], member["lag"])
        if member["last_contact_s"] is not None:
            contact.add_metric([member["id"]], member["last_contact_s"])
    yield lag
    yield contact
    timings = log.timings
    yield CounterMetricFamily(
        "agentflow_raft_elections",
        "Elections this master started (it became a candidate)",
        value=timings.elections,
    )
    yield CounterMetricFamily(
        "agentflow_raft_leader_changes",
        "Times this master learnt of a new leader",
        value=timings.leader_changes,
    )
    for name, doc, hist in (
        ("commit", "A command from proposal until committed and applied (leader)", timings.commit),
        ("fsync", "One write of raft.db: entries and hard state, fsynced", timings.fsync),
        ("apply", "One batch of committed entries applied, its events delivered", timings.apply),
        ("snapshot_take", "A state snapshot taken and written", timings.snapshot_take),
        ("snapshot_install", "A leader's snapshot installed", timings.snapshot_install),
    ):
        yield histogram_family(f"agentflow_raft_{name}_seconds", doc, hist)


def latency_metrics(requests: RequestTimings, tasks: TaskTimings) -> Iterator[Metric]:
    yield histogram_family(
        "agentflow_http_request_seconds",
        "HTTP requests answered, by method, route template and status code",
        requests.http,
    )
    yield histogram_family(
        "agentflow_socket_frame_seconds",
        "Frames of the submit and lock sockets, from read to answer, by route template",
        requests.socket,
    )
    yield histogram_family(
        "agentflow_task_queue_wait_seconds",
        "Tasks from queued until their attempt started (observed by the leader)",
        tasks.queue_wait,
    )
    yield histogram_family(
        "agentflow_task_run_seconds",
        "Tasks' last attempt from start to outcome (observed by the leader)",
        tasks.run,
    )
