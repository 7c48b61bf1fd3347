"""``agentflow cluster``: status, membership and leadership of the masters."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.text import Text

from agentflow.cli.backup import backup, restore
from agentflow.cli.output import Cell, Format, Output, output_options
from agentflow.cli.tasks import client_options, make_client
from agentflow.errors import AgentFlowError

__all__ = ["cluster"]


@click.group("cluster")
def cluster() -> None:
    """Inspect and change the set of masters."""


_LINK_STYLES = {"down": "bold red", "unknown": "yellow"}


def _link(member: dict[str, Any]) -> str:
    """The member's link; a master older than the ``link`` field only said ``connected``."""
    link = member.get("link")
    if isinstance(link, str):
        return link
    return "up" if member["connected"] else "down"


def _show(status: dict[str, Any], out: Output | None = None, asked: str | None = None) -> None:
    """The cluster as ``status`` (one master's answer) shows it; ``asked``: the master that was
    asked first, when the leader answered in its place."""
    out = out or Output(format=Format.TABLE, tty=sys.stdout.isatty())
    if out.json:
        out.document(status)
        return
    via = f" (asked {asked})" if asked and asked != status["node_id"] else ""
    out.line(
        f"leader {status['leader_id'] or 'unknown'} ({status['leader_url'] or '-'}), "
        f"term {status['term']}, commit {status['commit_index']}, "
        f"answered by {status['node_id']}{via}"
    )
    rows: list[list[Cell]] = []
    for m in status["members"]:
        contact = m["last_contact_s"]
        link = _link(m)
        rows.append(
            [
                m["id"],
                m["role"],
                m["api_url"] or "",
                m["raft_address"],
                "" if m["match_index"] is None else str(m["match_index"]),
                "" if m["lag"] is None else str(m["lag"]),
                "" if contact is None else f"{contact:.2f}s ago",
                Text("link down" if link == "down" else link, style=_LINK_STYLES.get(link, "")),
            ]
        )
    headers = ("id", "role", "api", "raft", "match", "lag", "last contact", "link")
    out.table(headers, rows, whole={0, 7})
    if status.get("store"):
        warning = status.get("store_warning")
        out.line(Text(f"store {status['store']}") + Text(
            f": may lose commits: {warning}" if warning else "", style="yellow"
        ))  # fmt: skip
    rejected = status.get("rejected_entries") or {}
    if rejected.get("total"):
        last = ", ".join(f"{e['index']}: {e['reason']}" for e in rejected["last"][-3:])
        out.line(
            Text(f"{rejected['total']} log entries rejected", style="yellow")
            + Text(f" (last: {last})")
        )


def _leader_view(status: dict[str, Any], api_token: str | None) -> dict[str, Any]:
    """The leader's own answer when a follower answered: only the leader hears every member
    (a follower rarely talks to the others), so its links, matches and lags are the real ones.
    The follower's answer stands if the leader cannot be asked."""
    leader_url = status.get("leader_url")
    if status.get("role") == "leader" or not leader_url:
        return status
    try:
        with make_client(leader_url, api_token, retry_for_s=_LEADER_RETRY_S) as leader:
            view = leader.request("GET", "/api/v1/cluster")
    except (AgentFlowError, OSError):
        return status
    return view if view.get("role") == "leader" else status


_LEADER_RETRY_S = 1.0  # asking the leader is a bonus: a short try, then the follower's view


@cluster.command("status")
@click.option("--local", is_flag=True, help="The answering master's own view, not the leader's.")
@output_options
@client_options
def status(master_url: str | None, api_token: str | None, local: bool, out: Output) -> None:
    """Leader, term and every member's role, lag and link, as the leader sees them (a member
    the leader has not heard from within the election timeout is shown as link down)."""
    with make_client(master_url, api_token) as client:
        view = client.request("GET", "/api/v1/cluster")
    if local:
        _show(view, out)
    else:
        _show(_leader_view(view, api_token), out, asked=view["node_id"])


@cluster.command("add-member")
@click.argument("node_id")
@click.option("--raft-address", required=True, help="host:port of its Raft listener.")
@click.option("--api-url", required=True, help="Its HTTP API, e.g. http://host:6767.")
@click.option("--voter", is_flag=True, help="Promote a caught-up learner to voter now.")
@click.option(
    "--force",
    is_flag=True,
    help="With --voter: add a voter that is not a member yet (it counts toward the quorum "
    "before it has the log; see docs/guide/cluster.md#membership before using it).",
)
@client_options
def add_member(
    *,
    master_url: str | None,
    api_token: str | None,
    node_id: str,
    raft_address: str,
    api_url: str,
    voter: bool,
    force: bool,
) -> None:
    """Add NODE_ID as a learner (start it with --join); the leader makes it a voter once it
    has caught up. --voter promotes a caught-up learner at once."""
    if force and not voter:
        raise click.UsageError("--force only applies with --voter")
    body = {
        "id": node_id,
        "raft_address": raft_address,
        "api_url": api_url,
        "voter": voter,
        "force": force,
    }
    with make_client(master_url, api_token) as client:
        _show(client.request("POST", "/api/v1/cluster/members", json=body))


@cluster.command("promote")
@click.argument("node_id")
@client_options
def promote(master_url: str | None, api_token: str | None, node_id: str) -> None:
    """Make learner NODE_ID a voter now (it must have caught up; the leader also does this by
    itself once it has)."""
    with make_client(master_url, api_token) as client:
        current = client.request("GET", "/api/v1/cluster")
        member = next((m for m in current["members"] if m["id"] == node_id), None)
        if member is None:
            raise click.ClickException(f"no member {node_id}")
        body = {
            "id": node_id,
            "raft_address": member["raft_address"],
            "api_url": member["api_url"],
            "voter": True,
        }
        _show(client.request("POST", "/api/v1/cluster/members", json=body))


@cluster.command("remove-member")
@click.argument("node_id")
@client_options
def remove_member(master_url: str | None, api_token: str | None, node_id: str) -> None:
    """Remove NODE_ID from the cluster (the leader too: it hands over first)."""
    with make_client(master_url, api_token) as client:
        _show(client.request("DELETE", f"/api/v1/cluster/members/{node_id}"))


@cluster.command("transfer-leader")
@click.argument("node_id", required=False)
@client_options
def transfer_leader(master_url: str | None, api_token: str | None, node_id: str | None) -> None:
    """Move leadership to NODE_ID (default: the most caught-up voter), e.g. before a restart."""
    with make_client(master_url, api_token) as client:
        _show(client.request("POST", "/api/v1/cluster/transfer-leadership", json={"to": node_id}))


def _register_upgrade() -> None:
    from agentflow.cli.upgrade import upgrade_plan, wait_caught_up

    cluster.add_command(upgrade_plan)
    cluster.add_command(wait_caught_up)


_register_upgrade()
cluster.add_command(backup)
cluster.add_command(restore)
