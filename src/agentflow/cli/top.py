"""``agentflow top``: a live terminal view of the cluster, queue, workers and running tasks.

Each frame is four reads of the API (cluster status, queue statistics, workers, running
tasks), polled every ``--interval``: a view that is redrawn whole needs snapshots, not the
event stream's deltas, and polling keeps working across a failover (the client follows the
leader). ``--once`` prints one frame and exits, for scripts and tests.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import click
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from agentflow.cli.params import DURATION
from agentflow.cli.tasks import client_options, make_client
from agentflow.client import Client

__all__ = ["MAX_TASK_ROWS", "Frame", "read_frame", "render", "top"]

MAX_TASK_ROWS = 200  # running tasks one frame may show
INTERVAL_MIN_S = 0.2


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    """What one redraw shows, as the API answered it, and when it was read."""

    cluster: dict[str, Any]
    queue: dict[str, Any]
    workers: list[dict[str, Any]]
    running: list[Mapping[str, Any]]
    read_at: datetime


def read_frame(client: Client, tasks: int) -> Frame:
    return Frame(
        cluster=client.request("GET", "/api/v1/cluster"),
        queue=client.queue_stats(),
        workers=client.workers(),
        running=[t.raw for t in client.list(status="running", limit=tasks)] if tasks else [],
        read_at=datetime.now(UTC),
    )


def _cluster(status: dict[str, Any]) -> RenderableType:
    leader = status.get("leader_id") or "none"
    head = Text.assemble(
        ("Cluster ", "bold"),
        f"{status['cluster_id']}  leader ",
        (leader, "bold green" if status.get("leader_id") else "bold red"),
        f"  term {status['term']}  commit {status['commit_index']}"
        f"  applied {status['applied_index']}  (answered by {status['node_id']})",
    )
    table = Table("member", "role", "match", "lag", "link", box=None, pad_edge=False)
    for m in status["members"]:
        link = m.get("link") or ""
        style = {"down": "red", "unknown": "yellow"}.get(link, "")
        table.add_row(
            m["id"],
            m["role"],
            "" if m.get("match_index") is None else str(m["match_index"]),
            "" if m.get("lag") is None else str(m["lag"]),
            Text(link, style=style),
        )
    return Group(head, table)


def _queue(stats: dict[str, Any]) -> RenderableType:
    pri = stats["by_priority"]
    totals = stats["totals"]
    head = Text.assemble(
        ("Queue ", "bold"),
        f"queued {stats['queued']} (urgent {pri['urgent']}, high {pri['high']}, "
        f"medium {pri['medium']}, low {pri['low']})  pending {stats['pending']}  "
        f"assigned {stats['assigned']}  running {stats['running']}  "
        f"oldest wait {stats['oldest_wait_s']:.1f}s  finished {stats['finished_per_s_1m']}/s",
    )
    line = Text(
        f"totals: submitted {totals['submitted']}  completed {totals['completed']}  "
        f"failed {totals['failed']}  retried {totals['retried']}  cancelled {totals['cancelled']}"
        + "".join(f"  [{g}: {n}]" for g, n in sorted(stats["by_group"].items()))
    )
    return Group(head, line)


def _workers(workers: list[dict[str, Any]]) -> RenderableType:
    live = sum(1 for w in workers if w["state"] not in ("lost", "offline"))
    table = Table(
        "worker", "state", "group", "busy/slots", "load", "heartbeat", "done", "failed",
        title=f"Workers ({live} live of {len(workers)})", title_justify="left", box=None,
    )  # fmt: skip
    for w in workers:
        age = w.get("last_heartbeat_age_s")
        style = {"lost": "red", "offline": "dim", "draining": "yellow"}.get(w["state"], "")
        table.add_row(
            w["id"],
            Text(w["state"], style=style),
            w["group"],
            f"{w['slots'] - w['free_slots']}/{w['slots']}",
            f"{w['load']:.2f}",
            "" if age is None else f"{age:.1f}s ago",
            str(w["completed"]),
            str(w["failed"]),
        )
    return table


def _running(tasks: list[Mapping[str, Any]], now: datetime, queued: int) -> RenderableType:
    table = Table(
        "task", "title", "worker", "running for", "priority",
        title=f"Running tasks ({len(tasks)} shown; {queued} queued)", title_justify="left",
        box=None,
    )  # fmt: skip
    for t in tasks:
        started = t.get("started_at")  # ISO 8601, UTC
        age = ""
        if isinstance(started, str):
            seconds = (now - datetime.fromisoformat(started)).total_seconds()
            age = f"{max(0.0, seconds):.1f}s"
        table.add_row(t["id"], t.get("title") or "", t.get("worker_id") or "", age, t["priority"])
    return table


def render(frame: Frame) -> RenderableType:
    """One frame: cluster, queue, workers, running tasks, top to bottom."""
    return Group(
        _cluster(frame.cluster),
        Text(""),
        _queue(frame.queue),
        Text(""),
        _workers(frame.workers),
        Text(""),
        _running(frame.running, frame.read_at, frame.queue["queued"]),
    )


@click.command("top")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.option(
    "--interval", type=DURATION, default="2s", show_default=True, help="Time between redraws."
)
@click.option(
    "--tasks",
    "task_rows",
    type=click.IntRange(0, MAX_TASK_ROWS),
    default=20,
    show_default=True,
    help="Running tasks shown.",
)
@client_options
def top(
    master_url: str | None, api_token: str | None, once: bool, interval: float, task_rows: int
) -> None:
    """A live view of the cluster, queue, workers and running tasks (Ctrl-C quits)."""
    console = Console()
    with make_client(master_url, api_token) as client:
        if once:
            console.print(render(read_frame(client, task_rows)))
            return
        pause_s = max(INTERVAL_MIN_S, interval)
        with Live(render(read_frame(client, task_rows)), console=console, screen=False) as live:
            try:
                while True:
                    time.sleep(pause_s)
                    live.update(render(read_frame(client, task_rows)))
            except KeyboardInterrupt:
                pass
