"""``agentflow cluster upgrade-plan`` and ``wait-caught-up``: a rolling upgrade, one master at
a time.

The plan comes from the leader's live status: the followers first, one at a time (stop, start
the new release on the same data directory and flags, wait until it has caught up), then
leadership moves to a follower already upgraded, and the old leader goes last. Only one member
is ever down, so a cluster of three keeps its quorum throughout, and the leader changes once.
A plan is refused while a member is down or behind: stopping another would risk the quorum.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import click

from agentflow.cli.output import Output, output_options
from agentflow.cli.params import DAY, Duration
from agentflow.cli.tasks import client_options, make_client
from agentflow.errors import ConflictError, TimeoutExpiredError

__all__ = ["PlanStep", "plan_steps", "upgrade_plan", "wait_caught_up"]

POLL_S = 0.2  # between two reads of the leader's status while waiting
LAG_MAX_DEFAULT = 0  # entries a member may lag behind the leader's commit at the wait's start


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanStep:
    member: str
    action: str  # stop | start | wait | transfer-leadership
    command: str


def plan_steps(status: dict[str, Any], master_url: str) -> list[PlanStep]:
    """The steps of a rolling upgrade of the cluster that the leader's ``status`` shows;
    :class:`ConflictError` when it is not safe to begin."""
    leader = status.get("leader_id")
    if status.get("role") != "leader" or not leader:
        raise ConflictError("no leader answered: an upgrade starts from a healthy cluster")
    members = status["members"]
    for m in members:
        if m["id"] != leader and (m.get("link") == "down" or not m.get("connected", True)):
            raise ConflictError(f"member {m['id']} is down: bring it back before an upgrade")
    followers = sorted(m["id"] for m in members if m["id"] != leader)
    url = f" --master-url {master_url}" if master_url else ""
    steps: list[PlanStep] = []
    for member in followers:
        steps += _restart(member, url)
    if followers:
        target = followers[0]
        steps.append(
            PlanStep(
                member=leader,
                action="transfer-leadership",
                command=f"agentflow cluster transfer-leader {target}{url}",
            )
        )
    steps += _restart(leader, url)
    return steps


def _restart(member: str, url: str) -> list[PlanStep]:
    return [
        PlanStep(
            member=member,
            action="stop",
            command=f"stop {member} with SIGTERM (kill -TERM <pid>, systemctl stop, or delete"
            " its pod) and wait for it to exit",
        ),
        PlanStep(
            member=member,
            action="start",
            command=f"start {member} on the new release with the same flags and --data-dir",
        ),
        PlanStep(
            member=member,
            action="wait",
            command=f"agentflow cluster wait-caught-up {member}{url}",
        ),
    ]


def _formats_line(status: dict[str, Any]) -> str | None:
    formats = status.get("formats")
    if not isinstance(formats, dict):
        return "the leader is of a release before format versions: it writes log format 1"
    reads = ", ".join(
        f"{nid} {'?' if r is None else f'{r[0]}..{r[1]}'}"
        for nid, r in sorted(formats.get("members", {}).items())
    )
    return f"log format written: {formats.get('log_written')}; formats read: {reads}"


@click.command("upgrade-plan")
@output_options
@client_options
def upgrade_plan(master_url: str | None, api_token: str | None, out: Output) -> None:
    """Print the safe order to upgrade the masters one at a time, from the live cluster:
    followers first, each caught up before the next stops, leadership moved to an upgraded
    follower before the leader restarts; with the commands to run."""
    status = _leader_status(master_url, api_token)
    steps = plan_steps(status, status.get("leader_url") or master_url or "")
    if out.json:
        out.document(
            {
                "leader_id": status["leader_id"],
                "order": list(dict.fromkeys(s.member for s in steps if s.action == "stop")),
                "formats": status.get("formats"),
                "steps": [asdict(s) for s in steps],
            }
        )
        return
    note = _formats_line(status)
    if note:
        out.line(note)
    for n, step in enumerate(steps, start=1):
        out.line(f"{n:>2}. {step.member:<12} {step.action:<20} {step.command}")


@click.command("wait-caught-up")
@click.argument("node_id")
@click.option(
    "--timeout",
    "timeout_s",
    type=Duration(at_most_s=DAY),
    default=120.0,
    show_default=True,
    help="Give up (exit 1) after this long.",
)
@client_options
def wait_caught_up(
    master_url: str | None, api_token: str | None, node_id: str, timeout_s: float
) -> None:
    """Wait until NODE_ID is linked to the leader and has every entry committed before the wait
    began (the step after restarting a member, before the next is stopped)."""
    deadline = time.monotonic() + timeout_s
    target: int | None = None
    last = "no leader answered"
    while time.monotonic() < deadline:
        status = _leader_status(master_url, api_token)
        if status.get("role") == "leader":
            target = status["commit_index"] if target is None else target
            member = next((m for m in status["members"] if m["id"] == node_id), None)
            if member is None:
                raise click.ClickException(f"no member {node_id} in the cluster")
            match = member.get("match_index") or 0
            if member.get("link") in ("up", "self") and match >= target:
                click.echo(f"{node_id} caught up: match {match}, leader {status['leader_id']}")
                return
            last = f"link {member.get('link')}, match {match} of {target}"
        time.sleep(POLL_S)
    raise TimeoutExpiredError(f"{node_id} did not catch up within {timeout_s:g}s ({last})")


def _leader_status(master_url: str | None, api_token: str | None) -> dict[str, Any]:
    """The leader's own status (it alone hears every member), asked through any master."""
    with make_client(master_url, api_token) as client:
        view: dict[str, Any] = client.request("GET", "/api/v1/cluster")
    leader_url = view.get("leader_url")
    if view.get("role") == "leader" or not leader_url:
        return view
    with make_client(leader_url, api_token) as leader:
        answer: dict[str, Any] = leader.request("GET", "/api/v1/cluster")
        return answer
