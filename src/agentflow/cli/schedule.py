"""``agentflow schedule``: periodic tasks and workflows (add, list, show, pause, resume, delete).

The master checks everything (the cron expression, the time zone, the duration, the task or
workflow body) before it commits anything; its refusal is printed as one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agentflow.cli.output import Output, output_options
from agentflow.cli.tasks import client_options, make_client

__all__ = ["schedule"]

OVERLAPS = ("skip", "allow", "cancel_previous")
CATCHUPS = ("none", "last", "all")


@click.group("schedule")
def schedule() -> None:
    """Run a task or a workflow on a cron expression or every so often."""


def _path(name: str) -> str:
    return f"/api/v1/schedules/{name}"


def _run_body(
    argv: tuple[str, ...], task_file: Path | None, workflow_file: Path | None
) -> dict[str, Any]:
    given = sum((bool(argv), task_file is not None, workflow_file is not None))
    if given != 1:
        raise click.UsageError("give one of: a command after --, --task-file or --workflow")
    if workflow_file is not None:
        from agentflow.cli.workflow import load_workflow_file

        return {"workflow": load_workflow_file(workflow_file)}
    if task_file is not None:
        from agentflow.cli.workflow import read_spec_file

        task = read_spec_file(task_file)
        if not isinstance(task, dict):
            raise click.UsageError(f"{task_file} does not hold a task object")
        return {"task": task}
    return {"task": {"args": list(argv)} if len(argv) > 1 else {"command": argv[0]}}


@schedule.command("add", context_settings={"ignore_unknown_options": False})
@click.argument("name")
@click.option("--cron", help="A 5-field cron expression, e.g. '0 3 * * *'.")
@click.option("--every", help="A period instead of cron: 30s, 5m, 1h30m, 1d.")
@click.option("--timezone", help="IANA time zone of the cron expression (default UTC).")
@click.option("--task-file", type=click.Path(path_type=Path), help="A task body (JSON or YAML).")
@click.option(
    "--workflow", "workflow_file", type=click.Path(path_type=Path), help="A workflow file to run."
)
@click.option(
    "--overlap",
    type=click.Choice(OVERLAPS),
    default="skip",
    show_default=True,
    help="When the previous run is still live.",
)
@click.option(
    "--catchup",
    type=click.Choice(CATCHUPS),
    default="none",
    show_default=True,
    help="What runs of the fire times missed (leader down, paused cluster).",
)
@click.option("--paused", is_flag=True, help="Create it paused.")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
@output_options
@client_options
def add(
    *,
    name: str,
    cron: str | None,
    every: str | None,
    timezone: str | None,
    task_file: Path | None,
    workflow_file: Path | None,
    overlap: str,
    catchup: str,
    paused: bool,
    argv: tuple[str, ...],
    master_url: str | None,
    api_token: str | None,
    out: Output,
) -> None:
    """Add schedule NAME running COMMAND (after --), a --task-file or a --workflow.

    \b
    agentflow schedule add nightly --cron '0 3 * * *' --timezone Europe/Paris -- make backup
    agentflow schedule add poll --every 5m --overlap skip -- ./poll.sh
    """
    if (cron is None) == (every is None):
        raise click.UsageError("give one of --cron and --every")
    body: dict[str, Any] = {"name": name, "overlap": overlap, "catchup": catchup, "paused": paused}
    body |= {"cron": cron} if cron is not None else {"every": every}
    if timezone is not None:
        body["timezone"] = timezone
    body |= _run_body(argv, task_file, workflow_file)
    with make_client(master_url, api_token) as client:
        made = client.request("POST", "/api/v1/schedules", json=body)
    _show(made, out)


def _spec(view: dict[str, Any]) -> str:
    if "cron" in view:
        return f"cron {view['cron']} ({view['timezone']})"
    return f"every {view['every']}"


def _last_id(view: dict[str, Any]) -> str:
    return str(view.get("last_task_id") or view.get("last_workflow_id") or "")


def _show(view: dict[str, Any], out: Output) -> None:
    if out.json:
        out.document(view)
        return
    rows = [
        ["name", view["name"]],
        ["when", _spec(view)],
        ["runs", f"a {view['kind']}"],
        ["paused", "yes" if view["paused"] else "no"],
        ["overlap", view["overlap"]],
        ["catchup", view["catchup"]],
        ["next run", view["next_run"] or ""],
        ["last run", view["last_run"] or ""],
        [f"last {view['kind']}", _last_id(view)],
        ["runs made", str(view["runs"])],
        ["fire times skipped", str(view["skipped"])],
    ]
    out.table(None, rows)


@schedule.command("list")
@output_options
@client_options
def list_(master_url: str | None, api_token: str | None, out: Output) -> None:
    """Every schedule with its next and last run."""
    with make_client(master_url, api_token) as client:
        views = client.request("GET", "/api/v1/schedules")["schedules"]
    if out.json:
        out.document(views)
        return
    rows = [
        [
            v["name"],
            _spec(v),
            "paused" if v["paused"] else "active",
            v["next_run"] or "",
            v["last_run"] or "",
            _last_id(v),
            v["overlap"],
            v["catchup"],
        ]
        for v in views
    ]
    headers = ("name", "when", "state", "next run", "last run", "last id", "overlap", "catchup")
    out.table(headers, rows, whole={0, 5})


@schedule.command("show")
@click.argument("name")
@output_options
@client_options
def show(name: str, master_url: str | None, api_token: str | None, out: Output) -> None:
    """One schedule: its timing, policies, next and last run."""
    with make_client(master_url, api_token) as client:
        _show(client.request("GET", _path(name)), out)


def _set_paused(name: str, paused: bool, master_url: str | None, api_token: str | None) -> None:
    with make_client(master_url, api_token) as client:
        view = client.request("PATCH", _path(name), json={"paused": paused})
    state = "paused" if view["paused"] else f"active, next run {view['next_run']}"
    click.echo(f"{name}: {state}")


@schedule.command("pause")
@click.argument("name")
@client_options
def pause(name: str, master_url: str | None, api_token: str | None) -> None:
    """Stop NAME from firing until it is resumed."""
    _set_paused(name, True, master_url, api_token)


@schedule.command("resume")
@click.argument("name")
@client_options
def resume(name: str, master_url: str | None, api_token: str | None) -> None:
    """Fire NAME again from its next fire time (what fell due while paused does not run)."""
    _set_paused(name, False, master_url, api_token)


@schedule.command("delete")
@click.argument("name")
@client_options
def delete(name: str, master_url: str | None, api_token: str | None) -> None:
    """Delete NAME; the tasks and workflows it made stay."""
    with make_client(master_url, api_token) as client:
        client.request("DELETE", _path(name))
    click.echo(f"{name}: deleted")
