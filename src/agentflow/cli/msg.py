"""``agentflow msg`` and ``agentflow agent``: messages between agents, from a shell or a task.

Inside a task the master (``AGENTFLOW_URL``) and the agent id (the task's id) come from the
environment, so ``agentflow msg send planner StatusUpdate '{"done": 3}'`` needs nothing else.
Received messages are printed one JSON object per line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from agentflow.cli.output import Output, output_options
from agentflow.cli.params import DAY, DURATION, Duration
from agentflow.cli.tasks import client_options, make_client
from agentflow.client import Message
from agentflow.client._agents import default_agent_id
from agentflow.errors import ClientError

__all__ = ["agent", "msg"]


def _json(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        raise click.BadParameter(
            f"content must be JSON, e.g. '{{\"n\": 1}}' or '\"text\"', got {value!r}"
        ) from None


def _print(message: Message | dict[str, Any]) -> None:
    if isinstance(message, Message):
        data = {
            "cursor": message.cursor,
            "id": message.id,
            "from": message.sender,
            "type": message.type,
            "content": message.content,
            "correlation_id": message.correlation_id,
            "requires_response": message.requires_response,
        }
    else:
        data = message
    click.echo(json.dumps(data))
    sys.stdout.flush()


def _sender_option(fn: Any) -> Any:
    return click.option(
        "--from",
        "sender",
        envvar="AGENTFLOW_AGENT_ID",
        show_envvar=True,
        help="Sending agent (default: this task; or $AGENTFLOW_AGENT_ID).",
    )(fn)


@click.group("msg")
def msg() -> None:
    """Send, request and receive messages between agents."""


def _send(
    client_args: tuple[str | None, str | None],
    sender: str | None,
    message: tuple[str, str, str | None],
    **extra: Any,
) -> None:
    to, type_, content = message
    body: dict[str, Any] = {"from": _default_sender(sender), "type": type_}
    body["content"] = _json(content)
    body |= {"topic": to[len("topic:") :]} if to.startswith("topic:") else {"to": to}
    body |= {k: v for k, v in extra.items() if v is not None}
    with make_client(*client_args) as client:
        sent = client.request("POST", "/api/v1/messages", json=body)
    undelivered = (
        f", undelivered (inbox full): {sent['undelivered']}" if sent["undelivered"] else ""
    )
    click.echo(f"{sent['id']} to {len(sent['recipients'])} agent(s){undelivered}")


def _default_sender(sender: str | None) -> str:
    try:
        return default_agent_id(sender)
    except ClientError:
        return "cli"


@msg.command("send")
@click.argument("to")
@click.argument("type_", metavar="TYPE")
@click.argument("content", required=False)
@click.option(
    "--ttl", type=Duration(at_most_s=30 * DAY), help="Not delivered after this long, e.g. 30s."
)
@click.option("--correlation-id", help="Ties a reply to its request.")
@_sender_option
@client_options
def send(
    *,
    to: str,
    type_: str,
    content: str | None,
    ttl: float | None,
    correlation_id: str | None,
    sender: str | None,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Send CONTENT (JSON) to TO: an agent id, '*' or topic:NAME."""
    ttl_ms = None if ttl is None else max(1, round(ttl * 1000))
    _send(
        (master_url, api_token),
        sender,
        (to, type_, content),
        ttl_ms=ttl_ms,
        correlation_id=correlation_id,
    )


@msg.command("broadcast")
@click.argument("type_", metavar="TYPE")
@click.argument("content", required=False)
@_sender_option
@client_options
def broadcast(
    type_: str,
    content: str | None,
    sender: str | None,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Send CONTENT (JSON) to every live agent."""
    _send((master_url, api_token), sender, ("*", type_, content))


@msg.command("publish")
@click.argument("topic")
@click.argument("type_", metavar="TYPE")
@click.argument("content", required=False)
@_sender_option
@client_options
def publish(
    *,
    topic: str,
    type_: str,
    content: str | None,
    sender: str | None,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Send CONTENT (JSON) to every agent subscribed to TOPIC (or to TYPE)."""
    _send((master_url, api_token), sender, (f"topic:{topic}", type_, content))


@msg.command("request")
@click.argument("to")
@click.argument("type_", metavar="TYPE")
@click.argument("content", required=False)
@click.option(
    "--timeout",
    "timeout_s",
    type=DURATION,
    default="30s",
    help="How long to wait for the reply, e.g. 1m.",
)
@_sender_option
@client_options
def request(
    *,
    to: str,
    type_: str,
    content: str | None,
    timeout_s: float,
    sender: str | None,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Send a request and print the reply's content; exit 4 if TO has no live session, 6 if
    no reply came in time."""
    body = {
        "from": _default_sender(sender),
        "to": to,
        "type": type_,
        "content": _json(content),
        "timeout_ms": max(1, round(timeout_s * 1000)),
    }
    with make_client(master_url, api_token) as client:
        answer = client.request(
            "POST", "/api/v1/messages/request", json=body, timeout_s=timeout_s + 30
        )
    click.echo(json.dumps(answer["reply"]["content"]))


@msg.command("reply")
@click.argument("message_id")
@click.argument("type_", metavar="TYPE")
@click.argument("content", required=False)
@_sender_option
@client_options
def reply(
    *,
    message_id: str,
    type_: str,
    content: str | None,
    sender: str | None,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Answer the request MESSAGE_ID (to its sender, with its correlation id)."""
    with make_client(master_url, api_token) as client:
        found = client.message_history(correlation_id=message_id)
        original = next((m for m in found if m["id"] == message_id), None)
        if original is None:
            raise click.BadParameter(f"no message {message_id} in the history")
    cid = original["correlation_id"] or original["id"]
    _send((master_url, api_token), sender, (original["from"], type_, content), correlation_id=cid)


@msg.command("recv")
@click.option("--agent", "agent_id", help="Whose inbox (default: this task).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing messages as they arrive.")
@click.option(
    "--wait", type=DURATION, default="0s", help="Without --follow: wait this long for one, e.g. 5s."
)
@click.option("--no-ack", is_flag=True, help="Leave them in the inbox.")
@client_options
def recv(
    *,
    agent_id: str | None,
    follow: bool,
    wait: float,
    no_ack: bool,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Print the inbox, one JSON object per line, and acknowledge what was printed."""
    with make_client(master_url, api_token) as client:
        agent = client.agent(default_agent_id(agent_id))
        try:
            if follow:
                for message in agent.messages():
                    _print(message)
                return
            batch = agent.receive(wait_s=wait)
            for message in batch:
                _print(message)
            if batch and not no_ack:
                agent.ack(batch[-1])
        finally:
            agent.close()


@msg.command("history")
@click.option("--agent", help="Sent or received by this agent.")
@click.option("--type", "type_", help="Of this type.")
@click.option("--correlation-id")
@click.option("--since", help="Epoch ms or ISO 8601.")
@click.option("--until", help="Epoch ms or ISO 8601.")
@click.option("--limit", type=int, default=100)
@client_options
def history(
    *,
    agent: str | None,
    type_: str | None,
    correlation_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Past messages (bounded history, oldest evicted first), one JSON object per line."""
    with make_client(master_url, api_token) as client:
        for message in client.message_history(
            agent=agent,
            type=type_,
            correlation_id=correlation_id,
            since=since,
            until=until,
            limit=limit,
        ):
            _print(message)


@click.group("agent")
def agent() -> None:
    """Named agent sessions and the agent registry."""


@agent.command("connect")
@click.argument("name")
@click.option(
    "--ttl",
    type=Duration(at_most_s=DAY),
    default="30s",
    help="Session length, renewed while connected.",
)
@client_options
def connect(name: str, ttl: float, master_url: str | None, api_token: str | None) -> None:
    """Be agent NAME until interrupted: print its messages as they arrive, acknowledging each."""
    with (
        make_client(master_url, api_token) as client,
        client.agent(name, ttl_s=ttl) as session,
    ):
        click.echo(f"connected as {name}", err=True)
        for message in session.messages():
            _print(message)


@agent.command("list")
@output_options
@client_options
def list_agents(master_url: str | None, api_token: str | None, out: Output) -> None:
    """Agents, whether they are live, their subscriptions and inbox depth."""
    with make_client(master_url, api_token) as client:
        agents = client.agents()
    if out.json:
        out.document(agents)
        return
    rows = [
        [
            a["id"],
            a["kind"],
            "yes" if a["live"] else "no",
            str(a["inbox_depth"]),
            str(a["acked"]),
            ", ".join(a["subscriptions"]),
        ]
        for a in agents
    ]
    out.table(("agent", "kind", "live", "inbox", "acked", "subscriptions"), rows, whole={0})


@agent.command("subscribe")
@click.argument("name")
@click.argument("pattern")
@client_options
def subscribe(name: str, pattern: str, master_url: str | None, api_token: str | None) -> None:
    """Deliver topic messages matching PATTERN (topic or type, e.g. builds.*) to NAME."""
    with make_client(master_url, api_token) as client:
        client.request("PUT", f"/api/v1/agents/{name}/subscriptions/{pattern}")
    click.echo(f"{name} subscribed to {pattern}")


@agent.command("unsubscribe")
@click.argument("name")
@click.argument("pattern")
@client_options
def unsubscribe(name: str, pattern: str, master_url: str | None, api_token: str | None) -> None:
    with make_client(master_url, api_token) as client:
        client.request("DELETE", f"/api/v1/agents/{name}/subscriptions/{pattern}")
    click.echo(f"{name} unsubscribed from {pattern}")
