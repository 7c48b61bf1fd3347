"""``agentflow run FILE``: the zero-setup default.

With no ``--master-url``, an embedded master and N workers start in this process on a free
loopback port with a temporary data directory. A workflow is shown live (each task's output by
step, retries, outcomes), then drawn with its critical path, with a table of results; a list of
tasks runs under a progress bar. The exit code is non-zero if any task failed.

The local workers run agent tasks through the templates of the file's ``agents:`` mapping and
of ``--agent NAME=TEMPLATE`` (which wins), and their tasks find this installation's
``agentflow`` and ``python`` first on ``PATH``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click
import pydantic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from agentflow.api.problems import validation_error
from agentflow.api.schemas import TaskIn
from agentflow.cli.runview import (
    ResultRow,
    draw_dag,
    follow_workflow,
    last_line,
    results_table,
    seconds_between,
    stdout_console,
    workflow_rows,
)
from agentflow.client import AsyncClient, TaskInfo
from agentflow.config import MasterConfig, WorkerConfig
from agentflow.errors import ConfigError

__all__ = ["agent_templates", "load_task_file", "run"]

T = TypeVar("T")

console = Console(stderr=True)
TASK_LIST_WORKERS = 2  # local workers for a list of tasks, unless --workers says otherwise
MAX_DEFAULT_WORKERS = 8  # a workflow gets one local worker per task of its widest level, up to this


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


def agent_templates(path: Path, data: Any, flags: tuple[str, ...]) -> dict[str, str]:
    """The agent templates of the local workers: the file's ``agents`` mapping (taken out of
    ``data``; its ``./`` and ``../`` words are relative to the file), then ``--agent``, which
    wins. Each is checked as a worker checks it."""
    from agentflow.worker.executor import check_template

    found = data.pop("agents", None) if isinstance(data, dict) else None
    if found is None:
        found = {}
    if not isinstance(found, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in found.items()
    ):
        raise ConfigError(f"{path}: agents maps a name to a template, e.g. coder: 'cmd {{prompt}}'")
    templates = {name: _relative_to(path.parent, template) for name, template in found.items()}
    for item in flags:
        name, sep, template = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--agent looks like NAME='CMD {{prompt}}', got {item!r}")
        templates[name.strip()] = template.strip()
    for name, template in templates.items():
        try:
            check_template(template)
        except ValueError as exc:
            raise ConfigError(f"agent {name}: {exc}") from None
    return templates


def _relative_to(base: Path, template: str) -> str:
    try:
        words = shlex.split(template)
    except ValueError:
        return template  # check_template says what is wrong with it
    return shlex.join(
        str((base / w).resolve()) if w.startswith(("./", "../")) else w for w in words
    )


def _check_agents(path: Path, tasks: list[dict[str, Any]], templates: Mapping[str, str]) -> None:
    """Refuse, before anything starts, a task whose agent no local worker has or can start."""
    for n, task in enumerate(tasks, 1):
        name = task.get("agent")
        if name is None:
            continue
        which = task.get("id") or task.get("title") or n
        if name not in templates:
            raise ConfigError(
                f"{path}: task {which} runs agent {name!r}, which the local workers lack:"
                f" give --agent {name}='CMD {{prompt}}'"
            )
        program = shlex.split(templates[name])[0]
        if shutil.which(program, path=_local_path()) is None:
            raise ConfigError(f"agent {name}: {program} is not installed here (not on PATH)")


def _widest_level(spec: Mapping[str, Any]) -> int:
    from agentflow.scheduler.dag import DagTask, check

    dag = [
        DagTask(id=str(t["id"]), dependencies=tuple(map(str, t.get("dependencies") or ())))
        for t in spec["tasks"]
    ]
    _problems, analysis = check(dag)
    return 1 if analysis is None else analysis.max_width  # the master says what is wrong


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@click.command("run")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--workers",
    "n_workers",
    type=click.IntRange(1, 64),
    help=f"Local workers (default: a workflow's widest level, up to {MAX_DEFAULT_WORKERS};"
    f" {TASK_LIST_WORKERS} for a list of tasks).",
)
@click.option(
    "--slots",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Slots per local worker.",
)
@click.option(
    "--agent",
    "agents",
    multiple=True,
    metavar="NAME=TEMPLATE",
    help="An agent CLI for the local workers, e.g. coder='claude -p {prompt}' (over the"
    " file's agents:).",
)
@click.option("--master-url", help="Run on this cluster instead of an embedded master.")
def run(
    file: Path,
    n_workers: int | None,
    slots: int,
    agents: tuple[str, ...],
    master_url: str | None,
) -> None:
    """Run the tasks or the workflow of FILE (YAML or JSON) and print their results.

    A workflow is a mapping whose tasks have `id` and `dependencies` (and optionally
    `failure_policy` and `defaults`); anything else is a list of independent tasks.
    """
    from agentflow.cli import workflow as wf

    if agents and master_url:
        raise ConfigError("--agent sets up local workers; a cluster's workers have their own")
    data = wf.read_spec_file(file)
    templates = agent_templates(file, data, agents)
    local = _Local(n_workers, slots, templates, master_url)
    if wf.is_workflow(data):
        spec = wf.load_workflow_file(file, data)
        if not master_url:
            _check_agents(file, spec["tasks"], templates)
        local.workers = n_workers or min(MAX_DEFAULT_WORKERS, max(1, _widest_level(spec)))
        view, lines, graph = asyncio.run(local.run(lambda url: _workflow_job(url, spec)))
        click.echo(draw_dag(graph, view))
        out = stdout_console()
        out.print(results_table(workflow_rows(view, lines)))
        out.print(
            f"workflow {view['id']} [bold]{view['status']}[/] in {view['elapsed_s']:.2f}s",
            highlight=False,
        )
        sys.exit(0 if view["status"] == "completed" else 1)
    tasks = load_task_file(file, data)
    if not master_url:
        _check_agents(file, tasks, templates)
    results = asyncio.run(local.run(lambda url: _submit_and_watch(url, tasks)))
    _print_results(results)
    failed = sum(1 for r in results if not r[0].ok)
    if failed:
        click.echo(f"{failed} of {len(results)} task(s) did not complete", err=True)
        sys.exit(1)


async def _workflow_job(
    url: str, spec: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    async with AsyncClient(url) as client:
        submitted = await client.submit_workflow(spec)
        view, lines = await follow_workflow(client, submitted["id"], console)
        return view, lines, await client.workflow_graph(submitted["id"])


class _Local:
    """Where a run happens: ``master_url``, or an embedded master with local workers."""

    def __init__(
        self,
        workers: int | None,
        slots: int,
        agents: dict[str, str],
        master_url: str | None,
    ) -> None:
        self.workers = workers or TASK_LIST_WORKERS
        self.slots = slots
        self.agents = agents
        self.master_url = master_url

    async def run(self, job: Callable[[str], Awaitable[T]]) -> T:
        """``job(url)`` against the cluster, or against an embedded master and local workers."""
        if self.master_url:
            return await job(self.master_url)
        data_dir = Path(tempfile.mkdtemp(prefix="agentflow-local-"))
        try:
            with _tools_first_on_path():
                return await self._embedded(job, data_dir)
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)

    async def _embedded(self, job: Callable[[str], Awaitable[T]], data_dir: Path) -> T:
        import uvicorn

        from agentflow.api import MasterService, create_app
        from agentflow.api.serving import uvicorn_config
        from agentflow.worker import Worker, probe_resources

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        config = MasterConfig(
            data_dir=data_dir, port=port, raft_port=_free_port(), log_level="warning"
        )
        server = uvicorn.Server(uvicorn_config(create_app(MasterService(config)), config))
        resources, _gpus = probe_resources()
        workers = [
            Worker(
                WorkerConfig(
                    worker_id=f"local-{i + 1}",
                    master_urls=(url,),
                    slots=self.slots,
                    agents=self.agents,
                ),
                resources,
                {},
            )
            for i in range(self.workers)
        ]
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


def _local_path() -> str:
    """``PATH`` as local tasks see it: this installation's scripts first."""
    found = os.environ.get("PATH")
    return os.pathsep.join(p for p in (str(Path(sys.executable).parent), found) if p)


@contextlib.contextmanager
def _tools_first_on_path() -> Iterator[None]:
    """Local tasks find this installation's ``agentflow`` and ``python`` first, as ``npm run``
    puts a project's tools first: a task that calls ``agentflow msg send`` gets this one."""
    before = os.environ.get("PATH")
    os.environ["PATH"] = _local_path()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = before


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
                return info, last_line(out["stdout"]) or last_line(out["stderr"])

            results = await asyncio.gather(*(watch(i) for i in ids))
        console.print(f"{len(ids)} task(s) in {time.monotonic() - started:.2f}s")
        return list(results)


def _print_results(results: list[tuple[TaskInfo, str]]) -> None:
    rows = [
        ResultRow(
            task=info.title[:40],
            status=info.status,
            exit_code=info.exit_code,
            attempts=info.attempts,
            seconds=seconds_between(info.raw.get("started_at"), info.raw.get("finished_at")),
            last_line=line or (info.reason or ""),
        )
        for info, line in results
    ]
    stdout_console().print(results_table(rows))
