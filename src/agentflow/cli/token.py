"""``agentflow token``: create, list and revoke API tokens with a role (admin token needed)."""

from __future__ import annotations

import datetime

import click

from agentflow.cli.output import Output, output_options
from agentflow.cli.params import DURATION
from agentflow.cli.tasks import client_options, make_client

__all__ = ["token"]

ROLES = ("client", "worker", "read-only")


@click.group("token")
def token() -> None:
    """API tokens with a role: client, worker or read-only."""


def _when(ms: int | None) -> str:
    if ms is None:
        return "never"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).isoformat(timespec="seconds")


@token.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the token may do.")
@click.option(
    "--ttl", "ttl_s", type=DURATION, help="Expire after this long, e.g. 1h or 7d (default: never)."
)
@click.option("--name", default="", help="A name to recognise it by in the list.")
@client_options
def create(
    role: str, ttl_s: float | None, name: str, master_url: str | None, api_token: str | None
) -> None:
    """Create a token and print its secret: shown this once, never stored in plain."""
    if ttl_s is not None and ttl_s <= 0:
        raise click.BadParameter("must be longer than 0", param_hint="--ttl")
    with make_client(master_url, api_token) as client:
        made = client.create_token(role, ttl_s=ttl_s, name=name or None)
    click.echo(made["token"])
    click.echo(
        f"id {made['id']}, role {made['role']}, expires {_when(made['expires_ms'])}", err=True
    )


@token.command("list")
@output_options
@client_options
def list_(master_url: str | None, api_token: str | None, out: Output) -> None:
    """Every token: id, name, role and expiry (never a secret)."""
    with make_client(master_url, api_token) as client:
        tokens = client.list_tokens()
    if out.json:
        out.document(tokens)
        return
    rows = [
        [
            t["id"],
            t["name"],
            t["role"],
            _when(t["created_ms"]),
            _when(t["expires_ms"]),
            "expired" if t["expired"] else "valid",
        ]
        for t in tokens
    ]
    out.table(("id", "name", "role", "created", "expires", "state"), rows, whole={0})


@token.command("revoke")
@click.argument("token_id")
@client_options
def revoke(token_id: str, master_url: str | None, api_token: str | None) -> None:
    """Revoke TOKEN_ID: refused from its next request on."""
    with make_client(master_url, api_token) as client:
        client.revoke_token(token_id)
    click.echo(f"revoked {token_id}")
