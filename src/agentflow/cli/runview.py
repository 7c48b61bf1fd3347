"""What ``agentflow run`` shows: each task's output as it comes, prefixed with its step, its
retries and outcome, with a progress bar below; at the end the DAG drawn level by level with its
critical path marked, and a table of results (attempts, time, last output line).

Output streams are followed for small workflows only (:data:`STREAMED_TASKS_MAX`): one stream per
task and stream is what a person can read anyway; a larger one shows the bar and the table.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from agentflow.client import AsyncClient
from agentflow.errors import AgentFlowError

__all__ = [
    "STREAMED_TASKS_MAX",
    "ResultRow",
    "draw_dag",
    "follow_workflow",
    "last_line",
    "results_table",
    "seconds_between",
    "stdout_console",
    "workflow_progress",
    "workflow_rows",
]

STREAMED_TASKS_MAX = 24  # workflows with more tasks show the progress bar only
REFRESH_S = 0.1  # the view is read again at most this often as events announce changes
POLL_S = 0.3  # without the event socket, the view is read again this often (a long poll)
DRAIN_S = 5.0  # once the workflow is over, the last output it may still take to arrive
FETCH_CONCURRENCY = 8  # outputs fetched at once for the table of a large workflow
LAST_LINE_CHARS = 80
PIPED_WIDTH = 200  # where stdout is not a terminal, rows are not wrapped at 80 columns
FINISHED = frozenset({"completed", "failed", "cancelled", "timed_out", "upstream_failed"})
_PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan")
_STREAMS = ("stdout", "stderr")


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultRow:
    """One line of the results table."""

    task: str
    status: str
    exit_code: int | None
    attempts: int
    seconds: float | None
    last_line: str


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Seconds between two ISO 8601 instants of the API, or None if either is missing."""
    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def last_line(text: str) -> str:
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


class LiveRun:
    """The live view of one workflow: output lines by step, retries, outcomes."""

    def __init__(self, client: AsyncClient, tasks: list[dict[str, Any]], console: Console) -> None:
        self.client = client
        self.console = console
        self.width = max((len(t["key"]) for t in tasks), default=4)
        self.styles = {t["key"]: _PALETTE[i % len(_PALETTE)] for i, t in enumerate(tasks)}
        self.streamed = len(tasks) <= STREAMED_TASKS_MAX
        self.last_lines: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        self.followers: dict[str, asyncio.Task[None]] = {}
        self.ended: set[str] = set()

    def say(self, key: str, text: str, style: str = "") -> None:
        prefix = Text(f"{key:<{self.width}} │ ", style=self.styles.get(key, ""))
        self.console.print(prefix + Text(text, style=style), soft_wrap=True)

    async def update(self, view: Mapping[str, Any], group: asyncio.TaskGroup) -> None:
        """Start following tasks that started, report retries and tasks that never ran."""
        for task in view["tasks"]:
            key, attempts = task["key"], task["attempts"]
            seen = self.attempts.get(key, 0)
            self.attempts[key] = attempts
            if 0 < seen < attempts:
                await self._retried(key, task["id"], seen, attempts)
            if key in self.followers or key in self.ended:
                continue
            if attempts > 0 and self.streamed:
                self.followers[key] = group.create_task(self._follow(key, task["id"]))
            elif task["status"] in FINISHED and (self.streamed or task["status"] != "completed"):
                self._finished(key, task)  # a large workflow shows only what did not complete

    async def _retried(self, key: str, task_id: str, seen: int, attempts: int) -> None:
        with contextlib.suppress(AgentFlowError):  # the view only: the table says the rest
            history = (await self.client.get(task_id)).raw.get("attempt_history") or []
            for past in history[seen - 1 : attempts - 1]:
                why = past.get("reason") or past.get("status")
                self.say(key, f"↻ attempt {past['attempt']} {past['status']} ({why}); retrying")

    async def _follow(self, key: str, task_id: str) -> None:
        await asyncio.gather(*(self._stream(key, task_id, s) for s in _STREAMS))
        with contextlib.suppress(AgentFlowError):
            self._finished(key, (await self.client.get(task_id)).raw)

    async def _stream(self, key: str, task_id: str, stream: str) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        with contextlib.suppress(AgentFlowError):
            async for chunk in self.client.follow(task_id, stream=stream):
                *complete, pending = (pending + decoder.decode(chunk)).split("\n")
                for line in complete:
                    self._line(key, line)
        pending += decoder.decode(b"", final=True)
        if pending:
            self._line(key, pending)

    def _line(self, key: str, line: str) -> None:
        line = line.rstrip("\r")
        self.say(key, line)
        if line.strip():
            self.last_lines[key] = line.strip()

    def _finished(self, key: str, task: Mapping[str, Any]) -> None:
        if key in self.ended or task["status"] not in FINISHED:
            return
        self.ended.add(key)
        status, attempts = task["status"], task["attempts"]
        took = seconds_between(task.get("started_at"), task.get("finished_at"))
        text = f"{status}" + ("" if took is None else f" in {took:.2f}s")
        if attempts > 1:
            text += f" after {attempts} attempts"
        if status != "completed" and task.get("reason"):
            text += f": {task['reason']}"
        ok = status == "completed"
        self.say(key, ("✓ " if ok else "✗ ") + text, "bold green" if ok else "bold red")

    async def drain(self) -> None:
        """Let the last output arrive (bounded), then stop following."""
        running = [t for t in self.followers.values() if not t.done()]
        if running:
            _done, late = await asyncio.wait(running, timeout=DRAIN_S)
            for follower in late:
                follower.cancel()


def workflow_progress(console: Console) -> Progress:
    """The progress bar of a workflow: its name, done of total, running and failed, time."""
    return Progress(
        TextColumn("[bold]{task.fields[name]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[running]} running, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=console,
    )


class WorkflowChanges:
    """The workflow's view read again as its events announce changes: each task's state, then
    every change (one socket; changes that come together cost one read). A master that refuses
    the event socket (or a stream that cannot go on) leaves the view to long polls."""

    def __init__(self, client: AsyncClient, workflow_id: str) -> None:
        self.client = client
        self.workflow_id = workflow_id
        self._heard: asyncio.Queue[None] = asyncio.Queue()  # one item per change heard
        self._ended = False  # the workflow's end was heard
        self._end_read = False  # and the view was read after it
        self._polling = False  # the socket was refused (or its stream ended)
        self._read_at = -REFRESH_S  # when the view was last read (the event loop's clock)
        self._listener: asyncio.Task[None] | None = None

    async def __aenter__(self) -> WorkflowChanges:
        self._listener = asyncio.create_task(self._listen())
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def _listen(self) -> None:
        stream = self.client.events(
            workflow_id=self.workflow_id, kinds=["task", "workflow"], current=True, follow=True
        )
        # Refused, events lost, no master left: the long polls go on (and raise what is wrong).
        with contextlib.suppress(Exception):
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if event["kind"] == "workflow" and event["status"] != "running":
                        self._ended = True
                    self._heard.put_nowait(None)
        self._polling = True
        self._heard.put_nowait(None)

    async def next_view(self) -> dict[str, Any]:
        """The view once something changed (or, polling, once :data:`POLL_S` has passed).

        Once the end was heard, the next view is read at once, even when the end came while
        the caller was busy with the previous one; only a view still not showing the end after
        that (a master behind the one that streamed) is left to long polls."""
        if self._listener is None or self._polling or self._end_read:
            return await self._polled()
        loop = asyncio.get_running_loop()
        if not self._ended:
            await self._heard.get()
            early = self._read_at + REFRESH_S - loop.time()
            if early > 0 and not self._ended:  # a busy workflow: changes taken together
                await asyncio.sleep(early)
        while not self._heard.empty():
            self._heard.get_nowait()
        self._end_read = self._ended
        self._read_at = loop.time()
        return await self.client.workflow(self.workflow_id)

    async def _polled(self) -> dict[str, Any]:
        return await self.client.workflow(self.workflow_id, wait_s=POLL_S)


async def follow_workflow(
    client: AsyncClient, workflow_id: str, console: Console
) -> tuple[dict[str, Any], dict[str, str]]:
    """Show the workflow live until it ends; its final view and each task's last output line."""
    view = await client.workflow(workflow_id)
    live = LiveRun(client, view["tasks"], console)
    with workflow_progress(console) as progress:
        bar = progress.add_task("wf", total=view["total"], name=view["name"], running=0, failed=0)
        async with WorkflowChanges(client, workflow_id) as changes, asyncio.TaskGroup() as group:
            while True:
                counts = view["counts"]
                progress.update(
                    bar,
                    completed=sum(counts.get(s, 0) for s in FINISHED),
                    running=counts.get("running", 0),
                    failed=sum(counts.get(s, 0) for s in FINISHED if s != "completed"),
                )
                await live.update(view, group)
                if view["status"] != "running":
                    break
                view = await changes.next_view()
            await live.drain()
    lines = live.last_lines if live.streamed else await _last_lines(client, view["tasks"])
    return view, lines


async def _last_lines(client: AsyncClient, tasks: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(task: Mapping[str, Any]) -> tuple[str, str]:
        async with gate:
            try:
                out = await client.output(task["id"])
            except AgentFlowError:
                return task["key"], ""
        return task["key"], last_line(out["stdout"]) or last_line(out["stderr"])

    return dict(await asyncio.gather(*(one(t) for t in tasks if t["attempts"] > 0)))


def workflow_rows(view: Mapping[str, Any], lines: Mapping[str, str]) -> list[ResultRow]:
    return [
        ResultRow(
            task=t["key"],
            status=t["status"],
            exit_code=t["exit_code"],
            attempts=t["attempts"],
            seconds=seconds_between(t.get("started_at"), t.get("finished_at")),
            last_line=lines.get(t["key"]) or (t["reason"] or ""),
        )
        for t in view["tasks"]
    ]


def stdout_console() -> Console:
    """Where results go: the terminal's width, or wide enough for a file or a pipe."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH)


def results_table(rows: Iterable[ResultRow]) -> Table:
    table = Table("task", "status", "exit", "attempts", "time", "last output line")
    for row in rows:
        style = "green" if row.status == "completed" else "red" if row.status in FINISHED else ""
        line = row.last_line
        table.add_row(
            row.task,
            Text(row.status, style=style),
            "" if row.exit_code is None else str(row.exit_code),
            str(row.attempts),
            "" if row.seconds is None else f"{row.seconds:.2f}s",
            Text(line if len(line) <= LAST_LINE_CHARS else line[: LAST_LINE_CHARS - 1] + "…"),
        )
    return table


def draw_dag(graph: Mapping[str, Any], view: Mapping[str, Any]) -> str:
    """The DAG level by level: each task's time, what it waits for, the critical path (*)."""
    analysis = graph["analysis"]
    critical = analysis["critical_path"]
    tasks = {t["key"]: t for t in view["tasks"]}
    width = max((len(k) for k in tasks), default=4)
    label = max(len(f"level {len(analysis['levels']) - 1}"), 7)
    lines = [f"{graph['name']} ({graph['id']}): {graph['status']} in {view['elapsed_s']:.2f}s"]
    for depth, level in enumerate(analysis["levels"]):
        for i, key in enumerate(level):
            task = tasks[key]
            took = seconds_between(task.get("started_at"), task.get("finished_at"))
            head = f"level {depth}" if i == 0 else ""
            mark = "*" if key in critical else " "
            time_s = "" if took is None else f"{took:.2f}s"
            waits = f"  <- {', '.join(task['dependencies'])}" if task["dependencies"] else ""
            tries = f"  ({task['attempts']} attempts)" if task["attempts"] > 1 else ""
            lines.append(f"  {head:<{label}}  {mark} {key:<{width}}  {time_s:>7}{waits}{tries}")
    lines.append(
        f"critical path (*): {' -> '.join(critical)}, {analysis['critical_path_s']:.2f}s;"
        f" widest level {analysis['max_width']}"
    )
    return "\n".join(lines)
