"""``agentflow master`` and ``agentflow worker``: the long-running processes."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import click

from agentflow.config import (
    MasterConfig,
    WorkerConfig,
    load_toml,
    parse_size,
    read_token_file,
    resolve,
)
from agentflow.errors import AgentFlowError, ConfigError

__all__ = ["master_command", "run_master", "with_token_file", "worker_command"]

_C = TypeVar("_C", MasterConfig, WorkerConfig)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("master")
@click.option("--node-id", help="This master's id (default master-1).")
@click.option("--host", help="Address to bind (default 127.0.0.1).")
@click.option("--port", type=int, help="HTTP port (default 6767).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Default ./agentflow-data.")
@click.option("--api-token", help="Require 'Authorization: Bearer TOKEN' on every request.")
@click.option(
    "--insecure", is_flag=True, default=None, help="Allow a non-loopback bind with no token."
)
@click.option("--heartbeat-interval", "heartbeat_interval_s", help="Worker heartbeat, e.g. 10s.")
@click.option(
    "--worker-timeout", "worker_loss_timeout_s", help="Declare a silent worker lost, e.g. 30s."
)
@click.option(
    "--lost-worker-retention",
    "lost_worker_retention_s",
    help="Remove a lost worker from the registry after this long (default 1h).",
)
@click.option(
    "--lock-delay",
    "lock_delay_s",
    help="Keep a lock whose holder was lost (not released) from new grants this long (default 0).",
)
@click.option("--message-history", type=int, help="Messages kept in history (default 10000).")
@click.option("--inbox-max", type=int, help="Messages one agent's inbox holds (default 10000).")
@click.option("--inbox-max-bytes", help="Content one inbox holds, e.g. 16M (default).")
@click.option("--message-history-bytes", help="Content kept in history, e.g. 64M (default).")
@click.option("--max-message-bytes", help="Largest message content, e.g. 256K (default).")
@click.option("--max-request-bytes", help="Largest request body, e.g. 8M.")
@click.option(
    "--raft-port", type=int, help="Peer port, opened with a cluster token (default: --port + 1)."
)
@click.option("--raft-host", help="Address for peer traffic (default: --host).")
@click.option("--peers", help="Initial members: m2=host:raftport,m3=host:raftport.")
@click.option("--cluster-id", help="Name of the cluster (peers of another are refused).")
@click.option(
    "--cluster-token", help="Shared secret that authenticates peers (a cluster needs one)."
)
@click.option(
    "--cluster-token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Read the cluster token from this file (kept out of ps).",
)
@click.option("--join", is_flag=True, default=None, help="Start empty; wait to be added.")
@click.option("--advertise-url", help="This master's API URL as peers and clients reach it.")
@click.option("--snapshot-every", type=int, help="Entries between snapshots (default 10000).")
@click.option("--raft-heartbeat", "raft_heartbeat_s", help="Leader heartbeat (default 100ms).")
@click.option(
    "--election-timeout",
    "election_timeout_s",
    help="Base election timeout, randomised up to twice it (default 700ms).",
)
@click.option(
    "--max-connections", type=int, help="Open connections; beyond, requests get 503 (2048)."
)
@click.option(
    "--header-timeout",
    "header_timeout_s",
    help="Close a connection whose request headers take longer (default 10s).",
)
@click.option(
    "--idle-timeout",
    "idle_timeout_s",
    help="Close a connection idle, or a request body stalled, this long (default 15s).",
)
@click.option(
    "--output-retained-bytes",
    help="Output kept for all tasks together, e.g. 256M (default); oldest finished evicted.",
)
@click.option(
    "--inbox-total-bytes",
    help="Message contents waiting in all inboxes together, e.g. 512M (default).",
)
@click.option("--log-level", help="debug, info, warning or error.")
@click.option(
    "--public-host",
    "public_hosts",
    multiple=True,
    help="Host name clients use to reach this API (repeatable or comma-separated).",
)
@click.option(
    "--allowed-origins",
    "allowed_origins",
    multiple=True,
    help="Browser origins allowed to call the API, e.g. https://ui.example (or '*').",
)
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML file.")
# -- tokens and API TLS (issue 12) --
@click.option("--api-token-file", help="Read --api-token from this file (not seen in ps).")
@click.option(
    "--tls-cert", help="PEM certificate (chain): HTTPS for the API, mutual TLS for peers."
)
@click.option("--tls-key", help="PEM private key of --tls-cert.")
@click.option(
    "--ca", "tls_ca", help="CA bundle trusted for the leader's API and, with --tls-cert, peers."
)
def master_command(config_file: str | None, **flags: object) -> None:
    """Run a master: HTTP API, worker sessions, scheduler, durable log."""
    for name in ("public_hosts", "allowed_origins"):  # none given: the env or file decide
        given = flags.get(name)
        flags[name] = ",".join(given) if isinstance(given, tuple) and given else None
    file = load_toml(config_file).get("master", {})
    flags["tls_ca"] = flags.get("tls_ca") or os.environ.get("AGENTFLOW_CA")
    config: MasterConfig = with_token_file(resolve(MasterConfig, flags, file=file))
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not is_loopback(config.host) and not config.api_token and not config.insecure:
        raise ConfigError(
            f"refusing to listen on {config.host} without --api-token (or pass --insecure)"
        )
    config.peer_map()  # refuse a malformed --peers before binding anything
    config.peer_token()  # and a cluster without a token: there is no built-in one
    config.peer_tls()  # and peer TLS without --ca, or certificate files that do not load
    _setup_logging(config.log_level)
    asyncio.run(run_master(config))


async def run_master(config: MasterConfig) -> None:
    import uvicorn

    from agentflow.api import MasterService, create_app
    from agentflow.api.serving import uvicorn_config

    # Both ports are bound here, before uvicorn starts: a busy one is one line and exit 1,
    # not uvicorn's startup traceback.
    api = _listen(config.host, config.port)
    service = MasterService(config)
    try:
        await service.start()
    except OSError as exc:
        api.close()
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL):  # only a bind says these
            host, port = config.raft_address
            why = f"cannot listen for peers on {host}:{port}: {os.strerror(exc.errno)}"
        else:
            why = f"cannot start: {exc}"
        raise AgentFlowError(why) from None
    server = uvicorn.Server(uvicorn_config(create_app(service), config))
    await server.serve(sockets=[api])


def _listen(host: str, port: int) -> socket.socket:
    """The API's listening socket on ``host:port``; a failure is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise AgentFlowError(f"cannot listen for the API on {host}:{port}: {why}") from None


def with_token_file(config: _C) -> _C:
    """``config`` with ``api_token`` read from ``api_token_file`` when only the file is given."""
    if config.api_token is None and config.api_token_file is not None:
        return replace(config, api_token=read_token_file(config.api_token_file))
    return config


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        for part in item.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise ConfigError(f"{what} must look like NAME=VALUE, got {part!r}")
            out[name.strip()] = value.strip()
    return out


def parse_resources(pairs: dict[str, str]) -> dict[str, float]:
    """``memory=16G`` becomes ``memory_mb=16384``; other names are plain numbers."""
    out: dict[str, float] = {}
    for name, value in pairs.items():
        if name in ("memory", "mem", "memory_mb"):
            out["memory_mb"] = float(value) if name == "memory_mb" else parse_size(value) / 2**20
            continue
        try:
            out[name] = float(value)
        except ValueError:
            raise ConfigError(f"resource {name} must be a number, got {value!r}") from None
    return out


@click.group("worker", invoke_without_command=True)
@click.option(
    "--worker-id",
    help="This worker's id (default: HOSTNAME-PID, unique per process; give a stable id to "
    "keep one identity across restarts).",
)
@click.option("--master-url", "master_urls", help="Master URL(s), comma-separated.")
@click.option("--group", help="Worker group (default 'default').")
@click.option("--slots", type=int, help="Tasks run at once (default: one per CPU).")
@click.option(
    "--prefetch",
    type=int,
    help="Tasks held queued beyond the slots (default 0: strict priority order).",
)
@click.option("--api-token", help="Bearer token of the masters.")
@click.option(
    "--agent", "agents", multiple=True, help="NAME=TEMPLATE, e.g. claude='claude -p {prompt}'."
)
@click.option("--resources", "resources", multiple=True, help="Override: cpu=8,memory=16G,gpu=1.")
@click.option("--labels", "labels", multiple=True, help="zone=a,os=linux.")
@click.option("--heartbeat-interval", "heartbeat_interval_s", help="e.g. 10s.")
@click.option(
    "--function-modules",
    help="Modules function tasks may import, e.g. 'mypkg.*,tools.jobs' (default: any).",
)
@click.option(
    "--allow-pickled-functions",
    is_flag=True,
    default=None,
    help="Run functions sent by value (pickled by the SDK: lambdas, closures, functions of "
    "a script or notebook). Unpickling runs the sender's code as this worker's user.",
)
@click.option("--log-level", help="debug, info, warning or error.")
@click.option("--api-token-file", help="Read --api-token from this file (not seen in ps).")
@click.option("--ca", "tls_ca", help="CA bundle that verifies the masters' certificates.")
@click.pass_context
def worker_command(
    ctx: click.Context,
    /,
    agents: tuple[str, ...],
    resources: tuple[str, ...],
    labels: tuple[str, ...],
    **flags: object,
) -> None:
    """Run a worker: connect to the masters and run the tasks they assign.

    With a subcommand (``agentflow worker drain ID``), manage a worker instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from agentflow.worker import Worker, probe_resources
    from agentflow.worker.claim import default_worker_id

    flags["worker_id"] = flags.get("worker_id") or default_worker_id()
    flags["master_urls"] = flags.get("master_urls") or os.environ.get("AGENTFLOW_URL")
    flags["agents"] = _pairs(agents, "--agent") or None
    flags["tls_ca"] = flags.get("tls_ca") or os.environ.get("AGENTFLOW_CA")
    config: WorkerConfig = with_token_file(resolve(WorkerConfig, flags))
    if config.slots < 0:
        raise ConfigError("--slots must be positive")
    _check_worker_config(config)
    detected, gpus = probe_resources()
    detected.update(parse_resources(_pairs(resources, "--resources")))
    _setup_logging(config.log_level)
    worker = Worker(
        config,
        detected,
        _pairs(labels, "--labels"),
        [{"index": g.index, "name": g.name, "memory_mb": g.memory_mb} for g in gpus],
    )
    asyncio.run(worker.run())


def _check_worker_config(config: WorkerConfig) -> None:
    """Refuse, before connecting, agent templates and module patterns that could not be run."""
    from agentflow.worker.executor import check_template
    from agentflow.worker.pyexec import check_module_patterns

    for name, template in config.agents.items():
        try:
            check_template(template)
        except ValueError as exc:
            raise ConfigError(f"--agent {name}: {exc}") from None
    try:
        check_module_patterns(config.function_modules)
    except ValueError as exc:
        raise ConfigError(f"--function-modules: {exc}") from None


def _worker_state(worker_id: str, drain: bool, master_url: str | None, token: str | None) -> None:
    from agentflow.cli.tasks import make_client

    with make_client(master_url, token) as client:
        view = client.drain_worker(worker_id, drain=drain)
    running = len(view["running"])
    click.echo(f"{worker_id} {view['state']} ({running} attempt(s) still held)")


@worker_command.command("drain")
@click.argument("worker_id")
@click.option("--master-url", envvar="AGENTFLOW_URL", help="Master URL(s), comma-separated.")
@click.option("--api-token", envvar="AGENTFLOW_API_TOKEN", help="Bearer token.")
def drain(worker_id: str, master_url: str | None, api_token: str | None) -> None:
    """Send WORKER_ID no new work; what it runs finishes."""
    _worker_state(worker_id, True, master_url, api_token)


@worker_command.command("activate")
@click.argument("worker_id")
@click.option("--master-url", envvar="AGENTFLOW_URL", help="Master URL(s), comma-separated.")
@click.option("--api-token", envvar="AGENTFLOW_API_TOKEN", help="Bearer token.")
def activate(worker_id: str, master_url: str | None, api_token: str | None) -> None:
    """Let a drained WORKER_ID take work again."""
    _worker_state(worker_id, False, master_url, api_token)
