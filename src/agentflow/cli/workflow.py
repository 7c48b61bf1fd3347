"""``agentflow workflow``: run a DAG of tasks, watch it, draw it, cancel and retry it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from agentflow.cli.output import Cell, Format, Output, output_options
from agentflow.cli.runview import workflow_progress
from agentflow.cli.tasks import client_options, make_client
from agentflow.cli.workspace import resolve_repo_paths
from agentflow.client import AsyncClient
from agentflow.errors import ConfigError, ForbiddenError

__all__ = [
    "is_workflow",
    "load_workflow_file",
    "read_spec_file",
    "render_graph",
    "watch",
    "workflow",
]

console = Console(stderr=True)
FINISHED = ("completed", "failed", "cancelled", "timed_out", "upstream_failed")


def read_spec_file(path: Path) -> Any:
    """The parsed YAML or JSON of a task or workflow file (one clear line if it is not)."""
    import yaml

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"{path} is not valid {path.suffix.lstrip('.') or 'YAML'}: {exc}"
        ) from None


def is_workflow(data: Any) -> bool:
    """A file is a workflow when it has workflow keys or tasks with dependencies."""
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict):
        return False
    if {"failure_policy", "defaults"} & data.keys():
        return True
    tasks = data.get("tasks")
    return isinstance(tasks, list) and any(
        isinstance(t, dict) and t.get("dependencies") for t in tasks
    )


def load_workflow_file(path: Path, data: Any = None) -> dict[str, Any]:
    """The workflow in a YAML or JSON file, checked field by field (one clear line if not)."""
    import pydantic

    from agentflow.api.problems import validation_error
    from agentflow.api.schemas import WorkflowIn

    data = read_spec_file(path) if data is None else data
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a workflow is a mapping with 'tasks'")
    data.setdefault("name", path.stem)
    data.pop("agents", None)  # the agent CLIs of `agentflow run`'s local workers, not of the DAG
    resolve_repo_paths(data, path.parent)
    try:
        WorkflowIn.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"{path}: {validation_error(exc).detail}") from None
    return data


async def watch(client: AsyncClient, workflow_id: str, total: int) -> dict[str, Any]:
    """A live progress bar until the workflow ends; returns its final view. The bar moves
    with the workflow's events (one socket); a master that refuses it is polled instead."""
    with workflow_progress(console) as progress:
        bar = progress.add_task("wf", total=total, name=workflow_id, running=0, failed=0)

        def show(counts: dict[str, int]) -> None:
            done = sum(counts.get(s, 0) for s in FINISHED)
            failed = sum(counts.get(s, 0) for s in FINISHED if s != "completed")
            running = counts.get("running", 0)
            progress.update(bar, completed=done, running=running, failed=failed)

        try:
            await _follow_events(client, workflow_id, show)
        except ForbiddenError:
            await _follow_polls(client, workflow_id, show)
        view = await client.workflow(workflow_id)
        show(view["counts"])
        progress.update(bar, name=view["name"])
        return view


async def _follow_events(
    client: AsyncClient, workflow_id: str, show: Callable[[dict[str, int]], None]
) -> None:
    """Until the workflow's end arrives: its tasks' states first, then each change."""
    states: dict[str, str] = {}
    stream = client.events(
        workflow_id=workflow_id, kinds=["task", "workflow"], current=True, follow=True
    )
    async with contextlib.aclosing(stream):
        async for event in stream:
            if event["kind"] == "task":
                states[event["task_id"]] = event["status"]
                show(dict(collections.Counter(states.values())))
            elif event["status"] != "running":
                return


async def _follow_polls(
    client: AsyncClient, workflow_id: str, show: Callable[[dict[str, int]], None]
) -> None:
    while True:
        view = await client.workflow(workflow_id, wait_s=0.5)
        show(view["counts"])
        if view["status"] != "running":
            return


def print_table(view: dict[str, Any]) -> None:
    table = Table("task", "status", "exit", "attempts", "waits for", "reason")
    for t in view["tasks"]:
        style = (
            "green"
            if t["status"] == "completed"
            else ("red" if t["status"] in FINISHED else "yellow")
        )
        table.add_row(
            t["key"],
            f"[{style}]{t['status']}[/]",
            "" if t["exit_code"] is None else str(t["exit_code"]),
            str(t["attempts"]),
            ", ".join(t["dependencies"]),
            (t["reason"] or "")[:50],
        )
    Console().print(table)
    Console().print(f"workflow {view['id']} [bold]{view['status']}[/] in {view['elapsed_s']:.2f}s")


def render_graph(graph: dict[str, Any]) -> str:
    """The DAG as text: one block per level, each task with its state and what it waits for."""
    nodes = {n["key"]: n for n in graph["nodes"]}
    analysis = graph["analysis"]
    critical = set(analysis["critical_path"])
    lines = [f"{graph['name']} ({graph['id']}): {graph['status']}"]
    for depth, level in enumerate(analysis["levels"]):
        lines.append(f"level {depth}")
        for key in level:
            node = nodes[key]
            mark = "*" if key in critical else " "
            waits = f"  <- {', '.join(node['dependencies'])}" if node["dependencies"] else ""
            lines.append(f"  {mark} {key} [{node['status']}]{waits}")
    lines.append(
        f"critical path (*): {' -> '.join(analysis['critical_path'])} "
        f"({analysis['critical_path_s']:.2f}s); widest level {analysis['max_width']}, "
        f"peak parallelism {analysis['peak_parallelism']}"
    )
    return "\n".join(lines)


@click.group("workflow")
def workflow() -> None:
    """Run and inspect DAG workflows."""


@workflow.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-w", "--wait", is_flag=True, help="Show progress; exit 1 unless it completes.")
@client_options
def run(master_url: str | None, api_token: str | None, file: Path, wait: bool) -> None:
    """Submit the workflow in FILE (YAML or JSON) to a cluster."""
    spec = load_workflow_file(file)
    with make_client(master_url, api_token) as client:
        view = client.submit_workflow(spec)
        urls, token = client.urls, api_token
    click.echo(view["id"])
    if not wait:
        return

    async def follow() -> dict[str, Any]:
        async with AsyncClient(urls, token=token) as aclient:
            return await watch(aclient, view["id"], view["total"])

    final = asyncio.run(follow())
    out = Output(format=Format.TABLE, tty=sys.stdout.isatty())
    show_tasks(final, out)
    out.line(f"workflow {final['id']} {final['status']} in {final['elapsed_s']:.2f}s")
    sys.exit(0 if final["status"] == "completed" else 1)


def _style(status: str) -> str:
    if status == "completed":
        return "green"
    return "red" if status in FINISHED else "yellow"


def show_tasks(view: dict[str, Any], out: Output) -> None:
    """Each task of the workflow: its key and task id (for `status`, `logs`), state, waits."""
    rows: list[list[Cell]] = [
        [
            t["key"],
            t["id"],
            Text(t["status"], style=_style(t["status"])),
            "" if t["exit_code"] is None else str(t["exit_code"]),
            str(t["attempts"]),
            ", ".join(t["dependencies"]),
            (t["reason"] or "")[:50],
        ]
        for t in view["tasks"]
    ]
    headers = ("task", "task id", "status", "exit", "attempts", "waits for", "reason")
    out.table(headers, rows, whole={0, 1, 2})


@workflow.command("status")
@click.argument("workflow_id")
@output_options
@client_options
def status(master_url: str | None, api_token: str | None, workflow_id: str, out: Output) -> None:
    """Progress: counts per state, percent done, elapsed, ETA, each task's state and id."""
    with make_client(master_url, api_token) as client:
        view = client.workflow(workflow_id)
    if out.json:
        out.document(view)
        return
    eta = "" if view["eta_s"] is None else f", ETA {view['eta_s']:.1f}s"
    out.line(
        f"{view['name']} ({view['id']}): {view['status']}, {view['percent_done']}% done, "
        f"{view['elapsed_s']:.1f}s elapsed{eta}; "
        + ", ".join(f"{n} {s}" for s, n in sorted(view["counts"].items()))
    )
    show_tasks(view, out)


@workflow.command("graph")
@click.argument("workflow_id")
@client_options
def graph(master_url: str | None, api_token: str | None, workflow_id: str) -> None:
    """Draw the DAG as text, with each task's state and the critical path."""
    with make_client(master_url, api_token) as client:
        click.echo(render_graph(client.workflow_graph(workflow_id)))


@workflow.command("cancel")
@click.argument("workflow_id")
@client_options
def cancel(master_url: str | None, api_token: str | None, workflow_id: str) -> None:
    """Cancel every task not finished; running ones have their process trees killed."""
    with make_client(master_url, api_token) as client:
        click.echo(f"{workflow_id} {client.cancel_workflow(workflow_id)['status']}")


@workflow.command("retry")
@click.argument("workflow_id")
@client_options
def retry(master_url: str | None, api_token: str | None, workflow_id: str) -> None:
    """Re-run the failed tasks and everything downstream; keep what succeeded."""
    with make_client(master_url, api_token) as client:
        view = client.retry_workflow(workflow_id)
    click.echo(f"{workflow_id} {view['status']}: {view['retried_tasks']} task(s) to run again")


@workflow.command("list")
@output_options
@client_options
def list_workflows(master_url: str | None, api_token: str | None, out: Output) -> None:
    """Workflows, newest first."""
    with make_client(master_url, api_token) as client:
        found = client.request("GET", "/api/v1/workflows")["workflows"]
    if out.json:
        out.document(found)
        return
    rows = [
        [
            w["id"],
            w["name"],
            w["status"],
            f"{w['percent_done']}%",
            str(w["total"]),
            f"{w['elapsed_s']:.1f}s",
        ]
        for w in found
    ]
    out.table(("id", "name", "status", "done", "tasks", "elapsed"), rows, whole={0, 2})
