"""Configuration: a flag, else its ``AGENTFLOW_*`` environment variable, else the TOML file's
``[master]``/``[worker]`` table (keys are the flag names: :mod:`agentflow.settings`), else the
default. :mod:`agentflow.sources` merges them and says where each value came from.

Durations accept ``250ms``, ``90s``, ``5m``, ``1h30m`` or a bare number of seconds (see
:mod:`agentflow.durations`); sizes accept ``512K``, ``16M``, ``2G`` or a bare number of bytes.
"""

from __future__ import annotations

import os
import re
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentflow.durations import parse_duration
from agentflow.errors import ConfigError

if TYPE_CHECKING:
    from agentflow.cluster.peertls import PeerTLS
    from agentflow.settings import Role

__all__ = [
    "MasterConfig",
    "WorkerConfig",
    "load_toml",
    "parse_duration",
    "parse_size",
    "read_token_file",
    "resolve",
    "tls_context",
]

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: str | int) -> int:
    """Bytes from ``512K``, ``16M``, ``2G`` or a number."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ConfigError(f"invalid size {value!r}: use e.g. 512K, 16M or 2G")
    unit = (match.group(2) or "").lower()[:1]
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


@dataclass(frozen=True, slots=True, kw_only=True)
class MasterConfig:
    node_id: str = "master-1"
    host: str = "127.0.0.1"
    port: int = 6767
    data_dir: Path = Path("agentflow-data")
    api_token: str | None = None
    insecure: bool = False
    heartbeat_interval_s: float = 10.0
    worker_loss_timeout_s: float = 30.0
    lost_worker_retention_s: float = 3600.0
    lock_delay_s: float = 0.0  # a lock whose holder was lost is not granted again for this long
    message_history: int = 10_000  # messages kept in the queryable history
    inbox_max: int = 10_000  # messages waiting in one agent's inbox
    inbox_max_bytes: int = 16 << 20  # and their contents
    message_history_bytes: int = 64 << 20  # contents kept in history
    max_message_bytes: int = 256 << 10
    max_request_bytes: int = 8 << 20
    max_batch_tasks: int = 10_000
    output_tail_bytes: int = 512 << 10
    max_queued_tasks: int = 1_000_000
    # -- the event stream (WS /api/v1/events) --
    event_ring: int = 50_000  # recent events kept on every master, for a resume after a drop
    event_queue_max: int = 50_000  # events waiting for one slow socket before it is closed
    max_event_sockets: int = 1024  # event sockets served at once
    log_level: str = "info"
    log_format: str = "text"  # text | json (one object per line, for log aggregation)
    raft_host: str | None = None  # default: the API host
    raft_port: int = 0  # 0: the API port + 1
    peers: str = ""  # "m2=host:port,m3=host:port" (their Raft addresses)
    cluster_id: str = "agentflow"
    join: bool = False  # start empty and wait to be added to an existing cluster
    force_new_cluster: bool = False  # make this member's data a cluster of itself alone
    advertise_url: str | None = None  # how peers and clients reach this API
    snapshot_every: int = 10_000  # applied entries between state snapshots (log compaction)
    raft_heartbeat_s: float = 0.1
    election_timeout_s: float = 0.7  # randomised up to twice this; see docs/guide/cluster.md
    # -- bounds on memory (connections, retained output, inboxes) --
    max_connections: int = 2048  # open HTTP/WebSocket connections; beyond, requests get 503
    header_timeout_s: float = 10.0  # a request's line and headers must arrive within this
    idle_timeout_s: float = 15.0  # a kept-alive connection idle, or a body stalled, this long
    output_retained_bytes: int = 256 << 20  # output tails of all tasks; oldest finished go first
    live_finished_tasks: int = 1_000  # newest finished tasks kept as records; older: compact rows
    # Finished tasks kept in memory; older ones go to this master's history on disk. The same on
    # every master of a cluster (eviction is part of the replicated state).
    max_finished_tasks: int = 200_000
    history_max_tasks: int = 10_000_000  # evicted tasks kept in history.db; the oldest go first
    inbox_total_bytes: int = 512 << 20  # contents waiting in all inboxes together
    # Peers: a cluster (--peers or --join) needs a token; a master without one opens no peer port.
    cluster_token: str | None = None
    cluster_token_file: Path | None = None  # read at start, surrounding whitespace stripped
    # -- tokens and API TLS (issue 12) --
    api_token_file: str | None = None  # the admin token, read from a file (not seen in ps)
    tls_cert: str | None = None  # PEM certificate chain: HTTPS API, mutual TLS between peers
    tls_key: str | None = None  # its PEM private key
    tls_ca: str | None = None  # CA bundle: the leader's HTTPS API; with tls_cert, the peers
    # Browser guard (api/browser.py): Host names served besides loopback, IP literals, the
    # bind host and the advertise URL's; Origins allowed besides the master's own.
    public_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    # -- where the command log lives (issue 20): "sqlite", the embedded Raft log, or a SQL
    # database's URL (postgresql://, mysql://, mariadb://) shared by every master --
    store: str = "sqlite"
    store_password_file: str | None = None  # the database password (else the URL's, or env)
    store_lease_s: float = 1.5  # the writer's lease: another master takes over within it
    store_poll_s: float = 0.05  # a master that does not write reads new entries this often
    # With a SQL store: rows of its history tables older than this are deleted by the writer.
    history_retention_s: float = 30 * 86_400.0

    @property
    def sql_store(self) -> bool:
        """The command log is in a SQL database (not the embedded Raft log)."""
        return self.store != "sqlite"

    @property
    def api_url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        return self.advertise_url or f"{scheme}://{self.host}:{self.port}"

    @property
    def raft_address(self) -> tuple[str, int]:
        return (self.raft_host or self.host, self.raft_port or self.port + 1)

    @property
    def clustered(self) -> bool:
        """Configured to be or to join a cluster (then it needs a cluster token)."""
        return self.join or bool(self.peer_map())

    def peer_token(self) -> str | None:
        """The cluster token from ``--cluster-token`` or ``--cluster-token-file``, or None.

        Refuses both at once, an empty one, and a cluster (``--peers``/``--join``) without one:
        there is no built-in token, and without one no peer port is opened.
        """
        if self.cluster_token is not None and self.cluster_token_file is not None:
            raise ConfigError("give --cluster-token or --cluster-token-file, not both")
        token = self.cluster_token
        if self.cluster_token_file is not None:
            try:
                token = Path(self.cluster_token_file).read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"cannot read --cluster-token-file {self.cluster_token_file}: {exc}"
                ) from None
        if token is not None and not token.strip():
            raise ConfigError("the cluster token is empty")
        if token is None and self.clustered:
            raise ConfigError(
                "a cluster (--peers or --join) needs --cluster-token or --cluster-token-file,"
                " the same on every master"
            )
        return token

    def peer_tls(self) -> PeerTLS | None:
        """The peer port's mutual TLS, when this master has a peer port and ``--tls-cert``.

        Peers verify each other against ``--ca``: a cluster with ``--tls-cert`` but no ``--ca``
        is refused, as are certificate files that cannot be loaded.
        """
        peer_port = self.clustered or self.cluster_token or self.cluster_token_file
        if not self.tls_cert or not peer_port:
            return None
        if not self.tls_key:
            raise ConfigError("--tls-cert and --tls-key go together")
        if not self.tls_ca:
            raise ConfigError(
                "a cluster with --tls-cert needs --ca: masters verify each other's"
                " certificates against it"
            )
        from agentflow.cluster.peertls import peer_tls  # the cluster package, only when needed

        return peer_tls(self.tls_cert, self.tls_key, self.tls_ca)

    def peer_map(self) -> dict[str, str]:
        """``--peers`` as ``{node id: "host:port"}``."""
        out: dict[str, str] = {}
        for item in filter(None, (p.strip() for p in self.peers.split(","))):
            node, sep, address = item.partition("=")
            _host, colon, port = address.rpartition(":")
            if not sep or not node or not colon or not port.isdigit():
                raise ConfigError(f"--peers entries look like m2=host:port, got {item!r}")
            if node == self.node_id:
                continue
            out[node] = address
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerConfig:
    worker_id: str
    master_urls: tuple[str, ...] = ("http://127.0.0.1:6767",)
    group: str = "default"
    slots: int = 0  # 0: one per CPU
    # Attempts held queued beyond the slots; -1 (AUTO_QUEUE): the master sizes the queue from
    # measured task duration. Queued work more urgent than what waits is never kept behind it.
    prefetch: int = -1
    api_token: str | None = None
    agents: dict[str, str] = field(default_factory=dict)
    heartbeat_interval_s: float = 10.0
    report_interval_s: float = 0.02  # starts and output wait this long to share a frame
    output_chunk_bytes: int = 64 << 10
    log_level: str = "info"
    log_format: str = "text"  # text | json (one object per line, for log aggregation)
    metrics_port: int = 0  # serve /metrics on this port (0: no metrics endpoint)
    metrics_host: str = "127.0.0.1"
    # -- execution hygiene --
    function_modules: tuple[str, ...] = ()  # modules function tasks may import ("pkg.*"); (): any
    # -- functions sent by value (issue 13) --
    allow_pickled_functions: bool = False  # unpickle and run calls sent by value (cloudpickle)
    # -- the Python runner taking several calls per message (issue 14) --
    # Queued Python calls sent to a runner in one message; 1 (off): one each. Off by default:
    # W1 showed no gain (the queue is rarely full when a slot frees); see docs/benchmarks.md.
    runner_batch: int = 1
    # -- git workspaces (issue 19; agentflow.worker.workspace) --
    workspace_dir: str | None = None  # None: $XDG_CACHE_HOME/agentflow/workspaces
    workspace_quota: int = 10 << 30  # bytes one worktree may hold while its task runs
    workspace_cache_max: int = 50 << 30  # bytes of all mirrors together (LRU)
    git_author: str | None = None  # "Name <email>"; None: AgentFlow <agentflow@HOST>
    git_token_file: str | None = None  # a token sent only under git_token_url
    git_token_url: str | None = None  # https://host/prefix/ (or http on loopback)
    git_token_header: str = "bearer"  # bearer | basic (user x-access-token)
    git_credential_helper: str | None = None
    git_ssh_command: str = "ssh -o BatchMode=yes"
    git_timeout_s: float = 600.0  # each fetch and push
    # -- tokens and API TLS (issue 12) --
    api_token_file: str | None = None  # the worker's token, read from a file
    tls_ca: str | None = None  # CA bundle that verifies the masters' certificates
    # -- settable in the [worker] table of a config file too (issue 13) --
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)  # overrides, e.g. memory=16G


def read_token_file(path: str | os.PathLike[str]) -> str:
    """A token kept in a file (so it does not show in ``ps``), without surrounding space."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise ConfigError(f"token file {path} is not UTF-8 text") from None
    if not token:
        raise ConfigError(f"token file {path} is empty")
    return token


def tls_context(ca: str | os.PathLike[str] | None) -> ssl.SSLContext:
    """The context that verifies a master's certificate: the system's roots, or ``ca``."""
    try:
        return ssl.create_default_context(cafile=os.fspath(ca) if ca else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA bundle {ca}: {exc}") from exc


def load_toml(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return data


def resolve(
    cls: type[Any],
    flags: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | None = None,
) -> Any:
    """Build ``cls`` from flags (by field), then the environment, then a file's table."""
    from agentflow.sources import check_table, layer  # it builds on this module

    role: Role = "master" if cls is MasterConfig else "worker"
    table = check_table(file or {}, role, f"[{role}]")
    return layer(role, flags, env=env, file=table).config()
