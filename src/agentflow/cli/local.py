"""``agentflow run FILE``: the zero-setup default.

With no ``--master-url``, an embedded master and N workers start in this process on a free
loopback port with a temporary data directory; the file's tasks run with a live progress bar,
each result is printed, and the exit code is non-zero if any task failed.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import pydantic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from agentflow.api.problems import validation_error
from agentflow.api.schemas import TaskIn
from agentflow.client import AsyncClient, TaskInfo
from agentflow.config import MasterConfig, WorkerConfig
from agentflow.errors import ConfigError

__all__ = ["load_task_file", "run"]

T = TypeVar("T")

console = Console(stderr=True)


def load_task_file(path: Path, data: Any) -> list[dict[str, Any]]:
    """Tasks from a file's parsed content: a list, or a mapping with ``tasks``. Validated here."""
    items = data.get("tasks") if isinstance(data, dict) else data
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: expected a list of tasks (or a mapping with 'tasks')")
    tasks = []
    for n, item in enumerate(items, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: task {n} is not a mapping")
        body = dict(item)
        name = body.pop("name", None) or body.pop("id", None)
        body.pop("dependencies", None)
        if name and not body.get("title"):
            body["title"] = str(name)
        try:
            TaskIn.model_validate(body)
        except pydantic.ValidationError as exc:
            raise ConfigError(f"{path}: task {n}: {validation_error(exc).detail}") from None
        tasks.append(body)
    return tasks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@click.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--workers", "n_workers", type=click.IntRange(1, 64), default=2, show_default=True)
@click.option(
    "--slots",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Slots per local worker.",
)
@click.option("--master-url", help="Run on this cluster instead of an embedded master.")
def run(file: Path, n_workers: int, slots: int, master_url: str | None) -> None:
    """Run the tasks or the workflow of FILE (YAML or JSON) and print their results.

    A workflow is a mapping whose tasks have ``id`` and ``dependencies`` (and optionally
    ``failure_policy`` and ``defaults``); anything else is a list of independent tasks.
    """
    from agentflow.cli import workflow as wf

    data = wf.read_spec_file(file)
    if wf.is_workflow(data):
        spec = wf.load_workflow_file(file, data)
        view = asyncio.run(
            _run_local(lambda url: _workflow_job(url, spec), n_workers, slots, master_url)
        )
        wf.print_table(view)
        sys.exit(0 if view["status"] == "completed" else 1)
    tasks = load_task_file(file, data)
    results = asyncio.run(
        _run_local(lambda url: _submit_and_watch(url, tasks), n_workers, slots, master_url)
    )
    _print_results(results)
    failed = sum(1 for r in results if not r[0].ok)
    if failed:
        click.echo(f"{failed} of {len(results)} task(s) did not complete", err=True)
        sys.exit(1)


async def _workflow_job(url: str, spec: dict[str, Any]) -> dict[str, Any]:
    from agentflow.cli.workflow import watch

    async with AsyncClient(url) as client:
        view = await client.submit_workflow(spec)
        return await watch(client, view["id"], view["total"])


async def _run_local(
    job: Callable[[str], Awaitable[T]], n_workers: int, slots: int, master_url: str | None
) -> T:
    """Run ``job(url)`` against ``master_url``, or an embedded master with local workers."""
    if master_url:
        return await job(master_url)
    import uvicorn

    from agentflow.api import MasterService, create_app
    from agentflow.api.serving import uvicorn_config
    from agentflow.worker import Worker, probe_resources

    data_dir = Path(tempfile.mkdtemp(prefix="agentflow-local-"))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    config = MasterConfig(data_dir=data_dir, port=port, raft_port=_free_port(), log_level="warning")
    server = uvicorn.Server(uvicorn_config(create_app(MasterService(config)), config))
    resources, _gpus = probe_resources()
    workers = [
        Worker(
            WorkerConfig(worker_id=f"local-{i + 1}", master_urls=(url,), slots=slots), resources, {}
        )
        for i in range(n_workers)
    ]
    try:
        async with asyncio.TaskGroup() as group:
            serving = group.create_task(server.serve())
            while not server.started:
                if serving.done():
                    raise ConfigError("embedded master failed to start")
                await asyncio.sleep(0.01)
            running = [group.create_task(w.run(install_signals=False)) for w in workers]
            try:
                return await job(url)
            finally:
                for w in workers:
                    w.drain()
                await asyncio.wait(running, timeout=10)
                server.should_exit = True
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def _submit_and_watch(url: str, tasks: list[dict[str, Any]]) -> list[tuple[TaskInfo, str]]:
    async with AsyncClient(url) as client:
        ids = await client.submit_many(tasks)
        started = time.monotonic()
        with Progress(
            TextColumn("[bold]running"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]} failed"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            bar = progress.add_task("tasks", total=len(ids), failed=0)
            failed = 0

            async def watch(task_id: str) -> tuple[TaskInfo, str]:
                nonlocal failed
                info = await client.wait(task_id)
                out = await client.output(task_id)
                failed += not info.ok
                progress.update(bar, advance=1, failed=failed)
                return info, out["stdout"] + out["stderr"]

            results = await asyncio.gather(*(watch(i) for i in ids))
        console.print(f"{len(ids)} task(s) in {time.monotonic() - started:.2f}s")
        return list(results)


def _print_results(results: list[tuple[TaskInfo, str]]) -> None:
    table = Table("task", "status", "exit", "worker", "output")
    for info, output in results:
        last = output.strip().splitlines()[-1] if output.strip() else ""
        style = "green" if info.ok else "red"
        table.add_row(
            info.title[:40],
            f"[{style}]{info.status}[/]",
            "" if info.exit_code is None else str(info.exit_code),
            info.worker_id or "",
            last[:60],
        )
    Console().print(table)
