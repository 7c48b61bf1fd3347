"""Prometheus metrics, read from the state machine at scrape time (no double bookkeeping)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from agentflow.api.service import MasterService
from agentflow.state import StateMachine, TaskStatus
from agentflow.state.locks import LockEventKind

__all__ = ["make_registry"]


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
        counts: dict[str, int] = {}
        for worker in sm.workers.values():
            counts[worker.state.value] = counts.get(worker.state.value, 0) + 1
        for state, n in sorted(counts.items()):
            workers.add_metric([state], n)
        yield workers
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
    return registry
