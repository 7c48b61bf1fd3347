"""``agentflow events``: the event stream, one line per event."""

from __future__ import annotations

import json
from typing import Any

import click

from agentflow.cli.output import Output, output_options
from agentflow.cli.tasks import client_options, make_client
from agentflow.client._events import EVENT_KINDS

__all__ = ["event_line", "events"]

# What follows an event's index and kind, by kind: its subject, then its state.
_SUBJECT = {
    "task": ("task_id", "status"),
    "workflow": ("workflow_id", "status"),
    "worker": ("worker_id", "state"),
    "lock": ("name", "event"),
    "message": ("agent_id", "cursor"),
}
_EXTRAS = ("group", "workflow_id", "exit_code", "reason", "session", "token")


def event_line(event: dict[str, Any]) -> str:
    """``INDEX KIND SUBJECT STATE [key=value ...]``: one event on one line."""
    kind = str(event.get("kind", "?"))
    subject, state = _SUBJECT.get(kind, ("", ""))
    words = [str(event.get("index")), kind, str(event.get(subject)), str(event.get(state))]
    for key in _EXTRAS:
        value = event.get(key)
        if value is not None and key not in (subject, state):
            words.append(f"{key}={' '.join(str(value).split())}")
    return " ".join(words)


@click.command("events")
@click.option("-f", "--follow", is_flag=True, help="Go on printing events as they apply.")
@click.option("--task", "task_ids", multiple=True, help="Only this task's events, repeatable.")
@click.option("--workflow", "workflow_id", help="Only this workflow's events and its tasks'.")
@click.option("--group", help="Only the events of this group's tasks and workers.")
@click.option("--kind", "kinds", multiple=True, type=click.Choice(EVENT_KINDS), help="Repeatable.")
@click.option(
    "--from-index",
    type=click.IntRange(min=0),
    help="Only events after this log index (where an earlier run stopped).",
)
@output_options
@client_options
def events(
    *,
    master_url: str | None,
    api_token: str | None,
    follow: bool,
    task_ids: tuple[str, ...],
    workflow_id: str | None,
    group: str | None,
    kinds: tuple[str, ...],
    from_index: int | None,
    out: Output,
) -> None:
    """Print task, workflow, worker, lock and message events: those the master still holds
    (after --from-index N), then with --follow each new one as it applies (Ctrl-C stops).

    One line per event: its log index, kind, subject and state (-o json: the event's JSON
    object per line). Any master serves them; a drop resumes on another."""
    with make_client(master_url, api_token) as client:
        stream = client.events(
            task_ids=task_ids or None,
            workflow_id=workflow_id,
            group=group,
            kinds=kinds or None,
            from_index=from_index,
            follow=follow,
        )
        for event in stream:
            click.echo(json.dumps(event) if out.json else event_line(event))
