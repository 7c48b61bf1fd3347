"""``agentflow lock``: take, hold, inspect and release distributed locks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import click

from agentflow.cli._app import fail
from agentflow.cli.output import Cell, Output, output_options
from agentflow.cli.params import DAY, DURATION, Duration
from agentflow.cli.tasks import client_options, make_client
from agentflow.client import Lease
from agentflow.errors import LeaseLostError

__all__ = ["lock"]

_KILL_GRACE_S = 5.0


@click.group("lock")
def lock() -> None:
    """Distributed locks: leases with fencing tokens, FIFO waits, semaphores."""


def _holder(session: str | None, task_id: str | None, task_token: int | None) -> dict[str, Any]:
    if task_id is not None or task_token is not None:
        if task_id is None or task_token is None:
            raise click.UsageError("--task-id and --task-token go together")
        return {"task_id": task_id, "task_token": task_token}
    if session is None:
        raise click.UsageError("say whose lock it is: --session (or --task-id and --task-token)")
    return {"session": session}


def _holder_options(fn: Any) -> Any:
    fn = click.option("--task-token", type=int, help="The attempt's fencing token.")(fn)
    fn = click.option("--task-id", help="Hold for a task attempt instead of a session.")(fn)
    fn = click.option("--session", help="The session that holds it (printed by acquire).")(fn)
    return fn


def _spec_options(fn: Any) -> Any:
    fn = click.option("--owner", help="Who holds it, for people reading `lock list`.")(fn)
    fn = click.option("--limit", type=int, default=1, help="A semaphore of N holders.")(fn)
    fn = click.option("--mode", type=click.Choice(["exclusive", "shared"]), default="exclusive")(fn)
    fn = click.option(
        "--ttl",
        type=Duration(at_most_s=DAY),
        default="30s",
        help="Lease length, renewed while held.",
    )(fn)
    fn = click.option(
        "--wait", type=DURATION, help="Wait this long for it, e.g. 10s (default: fail at once)."
    )(fn)
    return fn


@lock.command("acquire")
@click.argument("name")
@_spec_options
@click.option("--session", help="Session to hold it for (default: a new one, printed).")
@output_options
@client_options
def acquire(
    *,
    name: str,
    wait: float | None,
    ttl: float,
    mode: str,
    limit: int,
    owner: str | None,
    session: str | None,
    out: Output,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Take NAME once and print its fencing token and session (it lapses after --ttl unless
    renewed with `lock renew`); exit 5 if held, 6 if --wait ran out."""
    body: dict[str, Any] = {
        "ttl_s": ttl,
        "wait_s": 0.0 if wait is None else wait,
        "mode": mode,
        "limit": limit,
    }
    if session is not None:
        body["session"] = session
    if owner is not None:
        body["owner"] = owner
    with make_client(master_url, api_token) as client:
        grant = client.request(
            "POST", f"/api/v1/locks/{name}/acquire", json=body, timeout_s=body["wait_s"] + 30
        )
    if out.json:
        out.document(grant)
        return
    click.echo(
        f"token={grant['token']} session={grant['session']} expires_in={grant['expires_in_s']}s"
    )


@lock.command("renew")
@click.argument("name")
@click.option("--token", type=int, required=True)
@click.option(
    "--ttl", type=Duration(at_most_s=DAY), help="New lease length, e.g. 30s (default: the grant's)."
)
@_holder_options
@client_options
def renew(
    *,
    name: str,
    token: int,
    ttl: float | None,
    session: str | None,
    task_id: str | None,
    task_token: int | None,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Extend a lease held by --session with --token."""
    body = {**_holder(session, task_id, task_token), "token": token}
    if ttl is not None:
        body["ttl_s"] = ttl
    with make_client(master_url, api_token) as client:
        grant = client.request("POST", f"/api/v1/locks/{name}/renew", json=body)
    click.echo(f"token={grant['token']} expires_in={grant['expires_in_s']}s")


@lock.command("release")
@click.argument("name")
@click.option("--token", type=int, required=True)
@_holder_options
@client_options
def release(
    *,
    name: str,
    token: int,
    session: str | None,
    task_id: str | None,
    task_token: int | None,
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Release NAME (only the holder's token can)."""
    body = {**_holder(session, task_id, task_token), "token": token}
    with make_client(master_url, api_token) as client:
        out = client.request("POST", f"/api/v1/locks/{name}/release", json=body)
    nxt = ", ".join(f"{g['session']} (token {g['token']})" for g in out["granted"])
    click.echo(f"released {name}" + (f"; now held by {nxt}" if nxt else ""))


@lock.command("force-release")
@click.argument("name")
@click.option("--reason", help="Recorded in the lock's history.")
@client_options
def force_release(
    name: str, reason: str | None, master_url: str | None, api_token: str | None
) -> None:
    """Admin: end every grant of NAME now (recorded as forced)."""
    with make_client(master_url, api_token) as client:
        out = client.force_release(name, reason)
    ended = ", ".join(g["session"] for g in out["released"]) or "nobody"
    click.echo(f"forced {name} from {ended}")


def _holder_rows(lk: dict[str, Any]) -> list[list[Cell]]:
    waiters = ", ".join(f"{w['session']} ({w['waiting_s']:.1f}s)" for w in lk["waiters"])
    rows: list[list[Cell]] = []
    for i, h in enumerate(lk["holders"] or [None]):
        rows.append(
            [
                lk["name"] if i == 0 else "",
                "" if h is None else h["mode"] + (f" /{lk['limit']}" if lk["limit"] > 1 else ""),
                "-" if h is None else h["session"],
                "" if h is None else h["owner"] or "",
                "" if h is None else str(h["token"]),
                "" if h is None else f"{h['expires_in_s']:.1f}s",
                waiters if i == 0 else "",
            ]
        )
    return rows


_LOCK_HEADERS = ("lock", "mode", "holder", "owner", "token", "expires in", "waiters")


@lock.command("list")
@output_options
@client_options
def list_locks(out: Output, master_url: str | None, api_token: str | None) -> None:
    """Every lock held or waited for, with holders, tokens, expiries and waiters."""
    with make_client(master_url, api_token) as client:
        locks = client.locks()
    if out.json:
        out.document(locks)
        return
    out.table(_LOCK_HEADERS, [row for lk in locks for row in _holder_rows(lk)], whole={0, 2})


@lock.command("show")
@click.argument("name")
@output_options
@client_options
def show(name: str, out: Output, master_url: str | None, api_token: str | None) -> None:
    """One lock: holders, waiters and its recent history."""
    with make_client(master_url, api_token) as client:
        info = client.lock_info(name)
    if out.json:
        out.document(info)
        return
    out.table(_LOCK_HEADERS, _holder_rows(info), whole={0, 2})
    history = info.get("history") or []
    if history:
        out.line("history (oldest first):")
        out.table(
            ("index", "event", "session", "token", "detail"),
            [
                [
                    str(e["index"]),
                    e["kind"],
                    e["session"] or "",
                    "" if e["token"] is None else str(e["token"]),
                    e["detail"] or "",
                ]
                for e in history
            ],
            whole={2},
        )


@lock.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("name")
@_spec_options
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@client_options
def run(
    *,
    name: str,
    wait: float | None,
    ttl: float,
    mode: str,
    limit: int,
    owner: str | None,
    command: tuple[str, ...],
    master_url: str | None,
    api_token: str | None,
) -> None:
    """Run COMMAND while holding NAME: `agentflow lock run NAME -- cmd args`.

    The lease is renewed in the background; the command gets AGENTFLOW_LOCK_TOKEN (and
    AGENTFLOW_LOCK_NAME). If the lease is lost, the command is stopped (SIGTERM, then SIGKILL)
    and this exits 8. Otherwise it exits with the command's code, after releasing.
    """
    child: list[subprocess.Popen[bytes]] = []
    lost = threading.Event()

    def on_lost(lease: Lease) -> None:
        lost.set()
        if child and child[0].poll() is None:
            click.echo(f"error: {lease.lost_reason}; stopping the command", err=True)
            _stop(child[0])

    with make_client(master_url, api_token) as client:
        context = client.lock(
            name,
            ttl_s=ttl,
            wait_s=0.0 if wait is None else wait,
            mode=mode,
            limit=limit,
            owner=owner,
            on_lost=on_lost,
        )
        with context as lease:
            env = dict(os.environ, AGENTFLOW_LOCK_TOKEN=str(lease.token), AGENTFLOW_LOCK_NAME=name)
            try:
                child.append(subprocess.Popen(list(command), env=env, start_new_session=True))
            except OSError as exc:
                fail(f"cannot run {command[0]}: {exc.strerror or exc}", 127)
            code = _wait_forwarding_signals(child[0])
    if lost.is_set():
        raise LeaseLostError(f"lock {name} was lost while the command ran")
    sys.exit(code if code >= 0 else 128 - code)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return

    def kill_later() -> None:
        try:
            proc.wait(_KILL_GRACE_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    threading.Thread(target=kill_later, daemon=True).start()


def _wait_forwarding_signals(proc: subprocess.Popen[bytes]) -> int:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
