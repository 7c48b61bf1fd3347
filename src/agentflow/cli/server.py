"""``agentflow master`` and ``agentflow worker``: the long-running processes."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, TypeVar

import click

from agentflow.cli.config import load_settings, setting_options
from agentflow.cli.params import parse_resources
from agentflow.config import MasterConfig, WorkerConfig, read_token_file
from agentflow.errors import AgentFlowError, ConfigError
from agentflow.logformat import json_formatter, setup_logging

if TYPE_CHECKING:
    from agentflow.worker import Worker

__all__ = ["master_command", "run_master", "with_token_file", "worker_command"]

_C = TypeVar("_C", MasterConfig, WorkerConfig)


def _current_term(log: object) -> Callable[[], int | None]:
    def term() -> int | None:
        try:
            return int(log.raft_status.term)  # type: ignore[attr-defined]
        except Exception:  # not started yet, or closed: the line goes out without it
            return None

    return term


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("master")
@setting_options("master")
def master_command(config_file: str | None, **flags: object) -> None:
    """Run a master: HTTP API, worker sessions, scheduler, durable log.

    Each setting is taken from its flag, else its environment variable (shown with each
    option), else the --config file's [master] table, whose keys are the flag names
    (port = 6767, worker-timeout = "30s"), else its default. `agentflow config show` prints
    the result and where each value came from.
    """
    layered = load_settings("master", config_file, flags)
    config: MasterConfig = with_token_file(layered.config())
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not is_loopback(config.host) and not config.api_token and not config.insecure:
        raise ConfigError(
            f"refusing to listen on {config.host} without --api-token (or pass --insecure)"
        )
    if config.max_finished_tasks < 1:
        raise ConfigError("--max-finished-tasks must be at least 1")
    if config.history_max_tasks < 1:
        raise ConfigError("--history-max-tasks must be at least 1")
    _check_store(config)  # a SQL store takes no --peers/--join; a malformed URL: one line
    config.peer_map()  # refuse a malformed --peers before binding anything
    config.peer_token()  # and a cluster without a token: there is no built-in one
    config.peer_tls()  # and peer TLS without --ca, or certificate files that do not load
    setup_logging(config.log_level, config.log_format, {"node_id": config.node_id})
    asyncio.run(run_master(config))


async def run_master(config: MasterConfig) -> None:
    import uvicorn

    from agentflow.api import MasterService, create_app
    from agentflow.api.serving import uvicorn_config

    # Both ports are bound here, before uvicorn starts: a busy one is one line and exit 1,
    # not uvicorn's startup traceback.
    api = _listen(config.host, config.port)
    service = MasterService(config)
    formatter = json_formatter()
    if formatter is not None:
        formatter.set_field("term", _current_term(service.log))
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
    """The API's listening socket on ``host:port``; a failure is one line.

    Made with ``IPPROTO_TCP`` named (``socket.create_server`` leaves proto 0): asyncio sets
    TCP_NODELAY on an accepted connection only when its socket says so, and without it every
    kept-alive answer written in two parts (headers, body) waits ~40 ms for the client's
    delayed ACK (Nagle).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise AgentFlowError(f"cannot listen for the API on {host}:{port}: {why}") from None
    return sock


def _check_store(config: MasterConfig) -> None:
    if config.sql_store or config.store_password_file is not None:
        from agentflow.cluster.sql.wiring import check_store  # loads the store only when asked

        check_store(config)


def with_token_file(config: _C) -> _C:
    """``config`` with ``api_token`` read from ``api_token_file`` when only the file is given."""
    if config.api_token is None and config.api_token_file is not None:
        return replace(config, api_token=read_token_file(config.api_token_file))
    return config


@click.group("worker", invoke_without_command=True)
@setting_options("worker")
@click.pass_context
def worker_command(ctx: click.Context, /, config_file: str | None, **flags: object) -> None:
    """Run a worker: connect to the masters and run the tasks they assign.

    Each setting is taken from its flag, else its environment variable (shown with each
    option), else the --config file's [worker] table, whose keys are the flag names
    (worker-id = "w1", labels = {zone = "a"}), else its default. `agentflow config show
    --role worker` prints the result and where each value came from.

    With a subcommand (`agentflow worker drain ID`), manage a worker instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from agentflow.worker import Worker, probe_resources
    from agentflow.worker.claim import default_worker_id

    layered = load_settings("worker", config_file, flags)
    config: WorkerConfig = with_token_file(layered.config(worker_id=default_worker_id()))
    if config.slots < 0:
        raise ConfigError("--slots must be positive")
    _check_worker_config(config)
    detected, gpus = probe_resources()
    detected.update(parse_resources(config.resources))
    setup_logging(config.log_level, config.log_format, {"worker_id": config.worker_id})
    worker = Worker(
        config,
        detected,
        dict(config.labels),
        [{"index": g.index, "name": g.name, "memory_mb": g.memory_mb} for g in gpus],
    )
    asyncio.run(_run_worker(worker))


async def _run_worker(worker: Worker) -> None:
    """The worker, with its /metrics endpoint while it runs (where --metrics-port is set)."""
    from agentflow.worker.metrics import make_worker_registry, serve_metrics

    config = worker.config
    async with serve_metrics(
        make_worker_registry(worker), config.metrics_host, config.metrics_port
    ):
        await worker.run()


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
@click.option(
    "--master-url", envvar="AGENTFLOW_URL", show_envvar=True, help="Master URL(s), comma-separated."
)
@click.option("--api-token", envvar="AGENTFLOW_API_TOKEN", show_envvar=True, help="Bearer token.")
def drain(worker_id: str, master_url: str | None, api_token: str | None) -> None:
    """Send WORKER_ID no new work; what it runs finishes."""
    _worker_state(worker_id, True, master_url, api_token)


@worker_command.command("activate")
@click.argument("worker_id")
@click.option(
    "--master-url", envvar="AGENTFLOW_URL", show_envvar=True, help="Master URL(s), comma-separated."
)
@click.option("--api-token", envvar="AGENTFLOW_API_TOKEN", show_envvar=True, help="Bearer token.")
def activate(worker_id: str, master_url: str | None, api_token: str | None) -> None:
    """Let a drained WORKER_ID take work again."""
    _worker_state(worker_id, False, master_url, api_token)
