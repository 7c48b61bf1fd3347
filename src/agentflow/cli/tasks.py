"""Task commands: submit, status, logs, tasks, cancel, workers, queue."""

from __future__ import annotations

import sys
import threading
from typing import Any, BinaryIO, NoReturn

import click
from rich.text import Text

from agentflow.cli.output import Cell, Output, output_options
from agentflow.cli.params import DAY, Duration, parse_pairs, parse_resources
from agentflow.cli.workspace import workspace_body, workspace_options, workspace_rows
from agentflow.client import Client, TaskInfo
from agentflow.config import read_token_file
from agentflow.errors import ConfigError

__all__ = ["client_options", "make_client"]


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Keep ``--api-token-file`` and ``--ca`` for :func:`make_client` (so the commands'
    signatures stay ``master_url, api_token``)."""
    if value is not None:
        ctx.meta[f"agentflow.{param.name}"] = value


def client_options(fn: Any) -> Any:
    fn = click.option(
        "--master-url",
        envvar="AGENTFLOW_URL",
        show_envvar=True,
        help="Master URL(s), comma-separated.",
    )(fn)
    fn = click.option(
        "--api-token", envvar="AGENTFLOW_API_TOKEN", show_envvar=True, help="Bearer token."
    )(fn)
    fn = click.option(
        "--api-token-file",
        envvar="AGENTFLOW_API_TOKEN_FILE",
        show_envvar=True,
        expose_value=False,
        callback=_remember,
        help="Read the bearer token from this file.",
    )(fn)
    fn = click.option(
        "--ca",
        envvar="AGENTFLOW_CA",
        show_envvar=True,
        expose_value=False,
        callback=_remember,
        help="CA bundle that verifies the masters' certificates.",
    )(fn)
    return fn


def make_client(
    master_url: str | None, api_token: str | None, *, retry_for_s: float = 4.0
) -> Client:
    ctx = click.get_current_context(silent=True)
    meta = ctx.meta if ctx is not None else {}
    token_file = meta.get("agentflow.api_token_file")
    if api_token is None and token_file is not None:
        api_token = read_token_file(token_file)
    return Client(master_url, token=api_token, retry_for_s=retry_for_s, ca=meta.get("agentflow.ca"))


def _kv(values: tuple[str, ...], what: str) -> dict[str, str]:
    """One ``NAME=VALUE`` per flag (a value may hold commas and ``=``)."""
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"{what} must look like NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def _needs(
    env: tuple[str, ...], label: tuple[str, ...], resources: tuple[str, ...]
) -> dict[str, Any]:
    """The ``env``, ``labels`` and ``resources`` of a task from their flags; a bad one is a
    usage error naming its flag, before anything is sent."""
    pairs = parse_pairs(resources, "--resources")
    try:
        resources_needed = parse_resources(pairs)
    except ConfigError as exc:
        raise click.BadParameter(exc.detail, param_hint="'--resources'") from None
    needs: dict[str, Any] = {
        "env": _kv(env, "--env"),
        "labels": _kv(label, "--label"),
        "resources": resources_needed,
    }
    return {name: value for name, value in needs.items() if value}


@click.command("submit", context_settings={"ignore_unknown_options": False})
@click.option("-c", "--command", help="Shell command to run (sh -c).")
@click.option("--agent", help="Agent template name on the worker (with --prompt).")
@click.option("--prompt", help="Prompt passed to the agent as one argument.")
@click.option("--title", default="", help="A title for listings.")
@click.option(
    "-p",
    "--priority",
    type=click.Choice(["urgent", "high", "medium", "low"]),
    default="medium",
    show_default=True,
)
@click.option(
    "--group", default="default", show_default=True, help="Run on a worker of this group."
)
@click.option(
    "--timeout",
    "timeout_s",
    type=Duration(at_most_s=7 * DAY),
    help="Kill an attempt that runs longer, e.g. 5m.",
)
@click.option("--retries", "max_retries", type=int, default=0, show_default=True)
@click.option(
    "--backoff",
    "retry_backoff_s",
    type=Duration(at_most_s=3600),
    default="1s",
    show_default=True,
    help="Wait before a retry, e.g. 30s.",
)
@click.option("-e", "--env", multiple=True, help="NAME=VALUE for the task, repeatable.")
@click.option("--cwd", help="Working directory on the worker.")
@click.option("--label", multiple=True, help="NAME=VALUE, repeatable.")
@click.option(
    "--resources",
    multiple=True,
    help="What it needs, e.g. cpu=2,gpu=1,memory_mb=512 (memory=1G works too).",
)
@click.option("--idempotency-key", help="A repeated key returns the first task.")
@click.option(
    "-w",
    "--wait",
    is_flag=True,
    help="Print the id to stderr, stream the output live, exit with the task's outcome "
    "(Ctrl-C stops watching; the task goes on).",
)
@workspace_options
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
@client_options
def submit(
    *,
    master_url: str | None,
    api_token: str | None,
    argv: tuple[str, ...],
    env: tuple[str, ...],
    label: tuple[str, ...],
    resources: tuple[str, ...],
    wait: bool,
    workspace: str | None,
    branch: str | None,
    sparse: tuple[str, ...],
    no_commit: bool,
    no_push: bool,
    commit_message: str | None,
    author: str | None,
    **fields: Any,
) -> None:
    """Submit a task: --command 'shell text', or -- PROGRAM ARGS..., or --agent/--prompt.

    Prints the task's id; with --wait, prints it to stderr instead, streams the output as
    `agentflow logs -f` does and exits 0 if the task completed (its exit code, or 1, if not)."""
    if argv and fields.get("command"):
        raise click.UsageError("give either --command or -- PROGRAM ARGS, not both")
    if not argv and not fields.get("command") and not fields.get("agent"):
        raise click.UsageError("nothing to run: give --command, -- PROGRAM ARGS, or --agent")
    needs = _needs(env, label, resources)
    fields["workspace"] = workspace_body(
        workspace=workspace,
        branch=branch,
        sparse=sparse,
        no_commit=no_commit,
        no_push=no_push,
        commit_message=commit_message,
        author=author,
    )
    with make_client(master_url, api_token) as client:
        task = client.submit(args=list(argv) if argv else None, **needs, **fields)
        if not wait:
            click.echo(task.id)
            return
        _watch(client, task.id)


def _watch(client: Client, task_id: str) -> NoReturn:
    """``submit --wait``: the id first (on stderr), then the output live, then the outcome as
    the exit code. Ctrl-C stops the watching, never the task."""
    try:
        click.echo(task_id, err=True)
        _follow(client, task_id)
        done = client.wait_many([task_id])[0]  # its end, over the event socket
    except KeyboardInterrupt:
        click.echo(
            f"stopped watching: task {task_id} goes on (cancel it: agentflow cancel {task_id})",
            err=True,
        )
        sys.exit(130)
    if not done.ok:
        click.echo(_outcome(done), err=True)
    sys.exit(_exit_code(done))


def _outcome(task: TaskInfo) -> str:
    """One line for a task that did not complete: its status, and why."""
    why = task.reason if task.reason != task.status else None  # not "cancelled: cancelled"
    if not why and task.exit_code is not None:
        why = f"exit code {task.exit_code}"
    return f"task {task.id} {task.status}" + (f": {why}" if why else "")


def _exit_code(task: TaskInfo) -> int:
    if task.ok:
        return 0
    if task.exit_code is not None and 0 < task.exit_code < 256:
        return task.exit_code
    return 1


_TASK_FIELDS = (
    "id",
    "title",
    "status",
    "priority",
    "group",
    "worker_id",
    "attempts",
    "exit_code",
    "reason",
    "unschedulable",
    "workflow_id",
    "key",
    "created_at",
    "started_at",
    "finished_at",
)
_SHOWN_WHEN_SET = frozenset({"unschedulable", "workflow_id", "key"})  # rare: no empty rows


@click.command("status")
@click.argument("task_id")
@output_options
@client_options
def status(master_url: str | None, api_token: str | None, task_id: str, out: Output) -> None:
    """Show one task (and why no worker can run it, when none can)."""
    with make_client(master_url, api_token) as client:
        task = client.get(task_id)
    raw = task.raw
    if out.json:
        out.document(dict(raw))
        return
    rows: list[list[Cell]] = []
    for key in _TASK_FIELDS:
        value = raw.get(key)
        if key in _SHOWN_WHEN_SET and value is None:
            continue
        text = "" if value is None else str(value)
        rows.append([key, Text(text, style="yellow") if key == "unschedulable" else text])
    rows += [list[Cell](row) for row in workspace_rows(raw)]
    out.table(None, rows)
    history = raw.get("attempt_history") or []
    if len(history) > 1:
        out.line("attempts:")
        for a in history:
            out.line(
                f"  #{a['attempt']} {a['status']} exit={a['exit_code']} "
                f"worker={a['worker_id']} {a['reason'] or ''}"
            )


def _follow(client: Client, task_id: str) -> None:
    """The task's stdout to stdout and its stderr to stderr, live, until the task ends; each
    stream follows the leader and resumes where it was (see :meth:`Client.follow`)."""
    errors: list[BaseException] = []

    def copy(stream: str, out: BinaryIO) -> None:
        try:
            for chunk in client.follow(task_id, stream=stream):
                out.write(chunk)
                out.flush()
        except Exception as exc:  # handed to the main thread, which reports it
            errors.append(exc)

    stderr = threading.Thread(target=copy, args=("stderr", sys.stderr.buffer), daemon=True)
    stderr.start()
    copy("stdout", sys.stdout.buffer)
    if not errors:  # stdout ended with the task: so does stderr, soon
        stderr.join()
    if errors:
        raise errors[0]


@click.command("logs")
@click.argument("task_id")
@click.option("-f", "--follow", is_flag=True, help="Stream output until the task ends.")
@client_options
def logs(master_url: str | None, api_token: str | None, task_id: str, follow: bool) -> None:
    """Print a task's output."""
    with make_client(master_url, api_token) as client:
        if follow:
            _follow(client, task_id)
            return
        out = client.output(task_id)
    for stream in ("stdout", "stderr"):
        if out[f"{stream}_truncated_bytes"]:
            click.echo(
                f"[{stream}: first {out[f'{stream}_truncated_bytes']} bytes dropped]", err=True
            )
    sys.stdout.write(out["stdout"])
    sys.stderr.write(out["stderr"])


@click.command("tasks")
@click.option("--status", "status_", help="Filter: queued, running, failed, ... (comma list).")
@click.option("--group")
@click.option("--priority", type=click.Choice(["urgent", "high", "medium", "low"]))
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option(
    "--history",
    is_flag=True,
    help="Go on into the master's history: tasks evicted beyond --max-finished-tasks.",
)
@output_options
@client_options
def tasks(
    *,
    master_url: str | None,
    api_token: str | None,
    status_: str | None,
    group: str | None,
    priority: str | None,
    limit: int,
    history: bool,
    out: Output,
) -> None:
    """List tasks, newest first."""
    filters = {"status": status_, "group": group, "priority": priority}
    with make_client(master_url, api_token) as client:
        found = client.list(**filters, limit=limit, history=history or None)
    if out.json:
        out.document([dict(t.raw) for t in found])
        return
    rows = [
        [
            t.id,
            t.status,
            t.priority,
            str(t.raw.get("group")),
            "" if t.exit_code is None else str(t.exit_code),
            t.worker_id or "",
            t.title[:60],
        ]
        for t in found
    ]
    out.table(
        ("id", "status", "priority", "group", "exit", "worker", "title"), rows, whole={0, 1, 5}
    )


@click.command("cancel")
@click.argument("task_id")
@client_options
def cancel(master_url: str | None, api_token: str | None, task_id: str) -> None:
    """Cancel a task; a running one has its whole process tree killed."""
    with make_client(master_url, api_token) as client:
        task = client.cancel(task_id)
    click.echo(f"{task.id} {task.status}")


def _pairs(values: dict[str, Any]) -> str:
    """``{"gpu": "a100", "zone": "b"}`` as ``gpu=a100,zone=b``."""
    return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())


def _resources(worker: dict[str, Any]) -> str:
    """Each resource the worker has as free/total, e.g. ``cpu=2/4,gpu=1/1``."""
    free = worker.get("free") or {}
    return ",".join(
        f"{name}={free.get(name, total):g}/{total:g}"
        for name, total in sorted((worker.get("resources") or {}).items())
        if total
    )


@click.command("workers")
@output_options
@client_options
def workers(master_url: str | None, api_token: str | None, out: Output) -> None:
    """List workers, with their labels and resources (free/total)."""
    with make_client(master_url, api_token) as client:
        found = client.workers()
    if out.json:
        out.document(found)
        return
    headers = ("id", "state", "group", "slots", "free", "load", "heartbeat", "done", "failed")
    rows = []
    for w in found:
        age = w["last_heartbeat_age_s"]
        rows.append(
            [
                w["id"],
                w["state"],
                w["group"],
                str(w["slots"]),
                str(w["free_slots"]),
                f"{w['load']:.2f}",
                "" if age is None else f"{age:.1f}s ago",
                str(w["completed"]),
                str(w["failed"]),
                _pairs(w.get("labels") or {}),
                _resources(w),
            ]
        )
    out.table((*headers, "labels", "resources (free/total)"), rows, whole={0})


@click.command("queue")
@output_options
@client_options
def queue(master_url: str | None, api_token: str | None, out: Output) -> None:
    """Queue statistics."""
    with make_client(master_url, api_token) as client:
        stats = client.queue_stats()
    if out.json:
        out.document(stats)
        return
    rows = [["queued", str(stats["queued"])]]
    rows += [[f"  {level}", str(n)] for level, n in stats["by_priority"].items()]
    rows += [[f"  group {group}", str(n)] for group, n in sorted(stats["by_group"].items())]
    rows.append(["oldest wait", f"{stats['oldest_wait_s']:.1f}s"])
    rows.append(["assigned / running", f"{stats['assigned']} / {stats['running']}"])
    rows += [[key, str(n)] for key, n in stats["totals"].items()]
    rows.append(["finished/s (1 min)", str(stats["finished_per_s_1m"])])
    live = stats["workers"]
    rows.append(["live workers / free slots", f"{live['live']} / {live['free_slots']}"])
    out.table(None, rows)
