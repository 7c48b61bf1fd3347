"""Prometheus metrics, read from the state machine at scrape time (no double bookkeeping)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agentflow.api.raft_metrics import latency_metrics, raft_metrics
from agentflow.api.service import MasterService
from agentflow.cluster.history import HistoryStats
from agentflow.histograms import OVERFLOW_LABEL
from agentflow.state import StateMachine, TaskStatus
from agentflow.state.locks import LockEventKind
from agentflow.state.records import WorkerState

__all__ = ["MAX_GROUP_SERIES", "make_registry"]

MAX_GROUP_SERIES = 64  # groups shown by queue depth (the deepest); the rest sum to "_other"


class _StateCollector(Collector):
    def __init__(self, svc: MasterService) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        sm = self._svc.machine
        tasks = GaugeMetricFamily("agentflow_tasks", "Tasks by status", labels=["status"])
        for status in TaskStatus:
            tasks.add_metric([status.value], sm.tasks.status_counts[status])
        yield tasks
        totals = CounterMetricFamily(
            "agentflow_tasks_events", "Task outcomes since the cluster began", labels=["event"]
        )
        for name in ("submitted", "completed", "failed", "retried", "timed_out", "cancelled"):
            totals.add_metric([name], sm.tasks.totals[name])
        yield totals
        workers = GaugeMetricFamily("agentflow_workers", "Workers by state", labels=["state"])
        counts = dict.fromkeys(WorkerState, 0)
        for worker in sm.workers.values():
            counts[worker.state] += 1
        for state, n in counts.items():
            workers.add_metric([state.value], n)
        yield workers
        yield from _queue_metrics(self._svc)
        yield GaugeMetricFamily(
            "agentflow_free_slots",
            "Free task slots on live workers",
            value=sm.workers.free_slots(),
        )
        yield GaugeMetricFamily(
            "agentflow_output_retained_bytes",
            "Output bytes held for all tasks",
            value=sm.outputs.held_bytes,
        )
        yield CounterMetricFamily(
            "agentflow_output_evicted_tasks",
            "Tasks whose output was evicted to keep within the overall budget",
            value=sm.outputs.evicted_tasks,
        )
        yield from _lock_metrics(sm)
        yield from _message_metrics(sm, self._svc.now_ms())
        yield GaugeMetricFamily(
            "agentflow_applied_index", "Last applied log index", value=sm.applied_index
        )
        yield CounterMetricFamily(
            "agentflow_rejected_entries",
            "Committed log entries skipped because they could not be decoded or applied",
            value=sm.rejected.total,
        )
        commands = CounterMetricFamily(
            "agentflow_commands_applied",
            "Commands this master applied since it started, by kind and outcome",
            labels=["command", "outcome"],
        )
        for (kind, outcome), n in sorted(sm.command_counts.items()):
            commands.add_metric([kind, outcome], n)
        yield commands


class _OpsCollector(Collector):
    """Raft status, what the shell timed, and task and request latencies."""

    def __init__(self, svc: MasterService) -> None:
        self._svc = svc

    def collect(self) -> Iterator[Metric]:
        yield from raft_metrics(self._svc.log)
        yield from latency_metrics(self._svc.request_timings, self._svc.task_timings)
        yield from _history_metrics(self._svc.history.stats())


def _history_metrics(stats: HistoryStats) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "agentflow_history_backlog",
        "Finished-task history items applied here and not yet known to be written",
        value=stats.backlog,
    )
    counters = {
        "written": ("History items this master wrote", stats.written),
        "dropped": ("History items dropped unwritten (past the backlog bound)", stats.dropped),
        "failed_rounds": ("History writes that failed; their items were kept", stats.failed_rounds),
    }
    for name, (doc, value) in counters.items():
        yield CounterMetricFamily(f"agentflow_history_{name}", doc, value=value)


def _queue_metrics(svc: MasterService) -> Iterator[Metric]:
    stats = svc.queue_stats()
    depth = GaugeMetricFamily(
        "agentflow_queue_depth", "Queued tasks by priority", labels=["priority"]
    )
    for priority, n in stats["by_priority"].items():
        depth.add_metric([priority], n)
    yield depth
    groups = GaugeMetricFamily(
        "agentflow_queue_group_depth",
        f"Queued tasks by group (the {MAX_GROUP_SERIES} deepest; the rest as {OVERFLOW_LABEL})",
        labels=["group"],
    )
    ranked = sorted(stats["by_group"].items(), key=lambda kv: (-kv[1], kv[0]))
    for group, n in ranked[:MAX_GROUP_SERIES]:
        groups.add_metric([group], n)
    if len(ranked) > MAX_GROUP_SERIES:
        groups.add_metric([OVERFLOW_LABEL], sum(n for _, n in ranked[MAX_GROUP_SERIES:]))
    yield groups
    yield GaugeMetricFamily(
        "agentflow_queue_oldest_wait_seconds",
        "How long the oldest queued task has waited",
        value=stats["oldest_wait_s"],
    )


def _lock_metrics(sm: StateMachine) -> Iterator[Metric]:
    table = sm.locks
    names = table.names()
    yield GaugeMetricFamily(
        "agentflow_locks_held",
        "Locks with at least one holder",
        value=sum(1 for n in names if table.holders(n)),
    )
    yield GaugeMetricFamily(
        "agentflow_lock_grants", "Grants in force", value=sum(len(table.holders(n)) for n in names)
    )
    yield GaugeMetricFamily(
        "agentflow_lock_waiters",
        "Sessions waiting for a lock",
        value=sum(len(table.waiters(n)) for n in names),
    )
    events = CounterMetricFamily(
        "agentflow_lock_events", "Lock events since the cluster began", labels=["kind"]
    )
    for kind in LockEventKind:
        events.add_metric([kind.value], table.counts[kind.value])
    yield events


def _message_metrics(sm: StateMachine, now_ms: int) -> Iterator[Metric]:
    table = sm.messages
    agents = GaugeMetricFamily("agentflow_agents", "Agents known, by liveness", labels=["live"])
    live = sum(1 for a in table.agents if sm.agent_live(a, now_ms))
    agents.add_metric(["true"], live)
    agents.add_metric(["false"], len(table.agents) - live)
    yield agents
    yield GaugeMetricFamily(
        "agentflow_inbox_messages",
        "Messages waiting in inboxes (unacknowledged)",
        value=sum(len(b.inbox) for b in table.agents.values()),
    )
    yield GaugeMetricFamily(
        "agentflow_inbox_bytes",
        "Message contents waiting in all inboxes",
        value=table.inbox_bytes_total,
    )
    yield GaugeMetricFamily(
        "agentflow_requests_pending",
        "Requests waiting for a reply",
        value=table.waiting_requests(now_ms),
    )
    totals = CounterMetricFamily(
        "agentflow_messages", "Message events since the cluster began", labels=["event"]
    )
    for event in ("sent", "delivered", "undelivered", "answered", "late"):
        totals.add_metric([event], table.totals[event])
    yield totals


def make_registry(svc: MasterService) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(_StateCollector(svc))
    registry.register(_OpsCollector(svc))
    ProcessCollector(registry=registry)  # process_* (CPU, memory, open files), Linux only
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
