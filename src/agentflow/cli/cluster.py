"""``agentflow cluster``: status, membership and leadership of the masters."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from agentflow.cli.tasks import client_options, make_client

__all__ = ["cluster"]

console = Console()


@click.group("cluster")
def cluster() -> None:
    """Inspect and change the set of masters."""


def _show(status: dict[str, Any]) -> None:
    console.print(
        f"leader [bold]{status['leader_id'] or 'unknown'}[/] ({status['leader_url'] or '-'}), "
        f"term {status['term']}, commit {status['commit_index']}, "
        f"answered by {status['node_id']}"
    )
    table = Table("id", "role", "api", "raft", "match", "lag", "last contact", "link")
    for m in status["members"]:
        contact = m["last_contact_s"]
        table.add_row(
            m["id"],
            m["role"],
            m["api_url"] or "",
            m["raft_address"],
            "" if m["match_index"] is None else str(m["match_index"]),
            "" if m["lag"] is None else str(m["lag"]),
            "" if contact is None else f"{contact:.2f}s ago",
            "up" if m["connected"] else "down",
        )
    console.print(table)
    rejected = status.get("rejected_entries") or {}
    if rejected.get("total"):
        last = ", ".join(f"{e['index']}: {e['reason']}" for e in rejected["last"][-3:])
        console.print(f"[yellow]{rejected['total']} log entries rejected[/] (last: {last})")


@cluster.command("status")
@client_options
def status(master_url: str | None, api_token: str | None) -> None:
    """Leader, term and every member's role, lag and link."""
    with make_client(master_url, api_token) as client:
        _show(client.request("GET", "/api/v1/cluster"))


@cluster.command("add-member")
@click.argument("node_id")
@click.option("--raft-address", required=True, help="host:port of its Raft listener.")
@click.option("--api-url", required=True, help="Its HTTP API, e.g. http://host:6767.")
@click.option("--voter", is_flag=True, help="Promote a caught-up learner to voter now.")
@click.option(
    "--force",
    is_flag=True,
    help="With --voter: add a voter that is not a member yet (it counts toward the quorum "
    "before it has the log; see the README before using it).",
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
