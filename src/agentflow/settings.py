"""The settings of ``agentflow master`` and ``agentflow worker``: one row per flag.

Each row names the flag, the config field it sets, its kind (how a value is parsed and
checked) and its environment variable. The click options, the TOML keys (``[master]`` and
``[worker]`` tables), the environment variables and ``agentflow config show`` are all made
from these rows, so a TOML key is always exactly a flag's name. Pure data: no click, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["MASTER_SETTINGS", "ROLES", "WORKER_SETTINGS", "Kind", "Role", "Setting"]

Role = Literal["master", "worker"]
ROLES: tuple[Role, ...] = ("master", "worker")

# text: a string; int; bool; duration: 30s, 5m or seconds; size: 16M or bytes; path: a Path;
# file: a file name kept as str; list: comma-separated or a TOML array; pairs: NAME=VALUE,...
# or a TOML table.
Kind = Literal["text", "int", "bool", "duration", "size", "path", "file", "list", "pairs"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Setting:
    key: str  # the flag without its dashes, and the TOML key
    field: str  # the MasterConfig / WorkerConfig field it sets
    kind: Kind
    help: str
    env: str = ""  # default: AGENTFLOW_<KEY>
    legacy_env: tuple[str, ...] = ()  # names read before this one existed; still read
    file_aliases: tuple[str, ...] = ()  # TOML spellings accepted before keys were flag names
    secret: bool = False  # masked by `agentflow config show`
    default_text: str = ""  # shown in --help when the field's default needs words
    repeatable: bool = False  # the flag may be given several times
    redact: bool = False  # a URL shown with its password masked (`agentflow config show`)

    @property
    def flag(self) -> str:
        return f"--{self.key}"

    @property
    def envvar(self) -> str:
        return self.env or "AGENTFLOW_" + self.key.upper().replace("-", "_")

    @property
    def envvars(self) -> tuple[str, ...]:
        """The environment variables read, the documented one first."""
        return (self.envvar, *self.legacy_env)


def _row(
    key: str,
    field: str,
    kind: Kind,
    help: str,
    *,
    master: bool,
    env: str = "",
    secret: bool = False,
    default_text: str = "",
    repeatable: bool = False,
    redact: bool = False,
) -> Setting:
    """A row; the names in use before keys were flag names (the field's) stay accepted."""
    env = env or "AGENTFLOW_" + key.upper().replace("-", "_")
    old_env = f"AGENTFLOW_{field.upper()}"
    return Setting(
        key=key,
        field=field,
        kind=kind,
        help=help,
        env=env,
        legacy_env=(old_env,) if old_env != env else (),
        # Only the master read a config file before, and its keys were the field names.
        file_aliases=(field,) if master and field != key else (),
        secret=secret,
        default_text=default_text,
        repeatable=repeatable,
        redact=redact,
    )


def _m(key: str, field: str, kind: Kind, help: str, **more: Any) -> Setting:
    return _row(key, field, kind, help, master=True, **more)


def _w(key: str, field: str, kind: Kind, help: str, **more: Any) -> Setting:
    return _row(key, field, kind, help, master=False, **more)


MASTER_SETTINGS: tuple[Setting, ...] = (
    _m("node-id", "node_id", "text", "This master's id."),
    _m("host", "host", "text", "Address to bind."),
    _m("port", "port", "int", "HTTP port."),
    _m("data-dir", "data_dir", "path", "Where the log and state live."),
    _m(
        "api-token",
        "api_token",
        "text",
        "Require 'Authorization: Bearer TOKEN' on every request.",
        secret=True,
    ),
    _m("api-token-file", "api_token_file", "file", "Read --api-token from this file (not in ps)."),
    _m("insecure", "insecure", "bool", "Allow a non-loopback bind with no token."),
    _m("heartbeat-interval", "heartbeat_interval_s", "duration", "Worker heartbeat."),
    _m("worker-timeout", "worker_loss_timeout_s", "duration", "Declare a silent worker lost."),
    _m(
        "lost-worker-retention",
        "lost_worker_retention_s",
        "duration",
        "Remove a lost worker from the registry after this long.",
    ),
    _m(
        "lock-delay",
        "lock_delay_s",
        "duration",
        "Keep a lock whose holder was lost (not released) from new grants this long.",
    ),
    _m("message-history", "message_history", "int", "Messages kept in history."),
    _m("inbox-max", "inbox_max", "int", "Messages one agent's inbox holds."),
    _m("inbox-max-bytes", "inbox_max_bytes", "size", "Content one inbox holds."),
    _m("message-history-bytes", "message_history_bytes", "size", "Content kept in history."),
    _m("max-message-bytes", "max_message_bytes", "size", "Largest message content."),
    _m("max-request-bytes", "max_request_bytes", "size", "Largest request body."),
    _m("max-batch-tasks", "max_batch_tasks", "int", "Tasks in one batch submit."),
    _m("max-queued-tasks", "max_queued_tasks", "int", "Queued tasks; beyond, submits get 429."),
    _m("event-ring", "event_ring", "int", "Recent events kept for resuming an event stream."),
    _m("event-queue-max", "event_queue_max", "int", "Events waiting for one socket; beyond, 4429."),
    _m("max-event-sockets", "max_event_sockets", "int", "Event sockets served at once."),
    _m("output-tail-bytes", "output_tail_bytes", "size", "Output kept per task and stream."),
    _m(
        "raft-port",
        "raft_port",
        "int",
        "Peer port, opened with a cluster token.",
        default_text="--port + 1",
    ),
    _m("raft-host", "raft_host", "text", "Address for peer traffic.", default_text="--host"),
    _m("peers", "peers", "text", "Initial members: m2=host:raftport,m3=host:raftport."),
    _m("cluster-id", "cluster_id", "text", "Name of the cluster (peers of another are refused)."),
    _m(
        "cluster-token",
        "cluster_token",
        "text",
        "Shared secret that authenticates peers (a cluster needs one).",
        secret=True,
    ),
    _m(
        "cluster-token-file",
        "cluster_token_file",
        "path",
        "Read the cluster token from this file (kept out of ps).",
    ),
    _m("join", "join", "bool", "Start empty; wait to be added."),
    _m(
        "force-new-cluster",
        "force_new_cluster",
        "bool",
        "Lost quorum: restart this member alone, data kept, as a new one-member cluster.",
    ),
    _m(
        "advertise-url",
        "advertise_url",
        "text",
        "This master's API URL as peers and clients reach it.",
        default_text="http(s)://HOST:PORT",
    ),
    _m("snapshot-every", "snapshot_every", "int", "Entries between snapshots."),
    _m("raft-heartbeat", "raft_heartbeat_s", "duration", "Leader heartbeat."),
    _m(
        "election-timeout",
        "election_timeout_s",
        "duration",
        "Base election timeout, randomised up to twice it.",
    ),
    _m("max-connections", "max_connections", "int", "Open connections; beyond, requests get 503."),
    _m(
        "header-timeout",
        "header_timeout_s",
        "duration",
        "Close a connection whose request headers take longer.",
    ),
    _m(
        "idle-timeout",
        "idle_timeout_s",
        "duration",
        "Close a connection idle, or a request body stalled, this long.",
    ),
    _m(
        "output-retained-bytes",
        "output_retained_bytes",
        "size",
        "Output kept for all tasks together; the oldest finished are evicted.",
    ),
    _m(
        "live-finished-tasks",
        "live_finished_tasks",
        "int",
        "Newest finished tasks kept as full records; older ones are kept as compact rows.",
    ),
    _m(
        "max-finished-tasks",
        "max_finished_tasks",
        "int",
        "Finished tasks kept in memory (the same on every master); older ones are read from"
        " this master's history on disk (with a SQL --store: the store's history tables).",
    ),
    _m(
        "history-max-tasks",
        "history_max_tasks",
        "int",
        "Evicted tasks this master keeps in its history on disk; beyond it the oldest are deleted.",
    ),
    _m(
        "inbox-total-bytes",
        "inbox_total_bytes",
        "size",
        "Message contents waiting in all inboxes together.",
    ),
    _m("log-level", "log_level", "text", "debug, info, warning or error."),
    _m(
        "log-format",
        "log_format",
        "text",
        "text, or json: one JSON object per line (time, level, logger, message, node id, ...).",
    ),
    _m(
        "public-host",
        "public_hosts",
        "list",
        "Host name clients use to reach this API (repeatable or comma-separated).",
        repeatable=True,
    ),
    _m(
        "allowed-origins",
        "allowed_origins",
        "list",
        "Browser origins allowed to call the API, e.g. https://ui.example (or '*').",
        repeatable=True,
    ),
    _m(
        "store",
        "store",
        "text",
        "Where the command log lives: sqlite (the embedded Raft log) or a database shared by"
        " every master, postgresql://USER@HOST[:PORT]/DB or mysql://... (mariadb://).",
        redact=True,
    ),
    _m(
        "store-password-file",
        "store_password_file",
        "file",
        "Read the --store database's password from this file (or AGENTFLOW_STORE_PASSWORD).",
    ),
    _m(
        "store-lease",
        "store_lease_s",
        "duration",
        "The writing master's lease on a SQL store; another master takes over within it.",
    ),
    _m(
        "store-poll",
        "store_poll_s",
        "duration",
        "How often a master on a SQL store that does not write reads new entries.",
    ),
    _m(
        "history-retention",
        "history_retention_s",
        "duration",
        "With a SQL --store: how long its history tables keep finished tasks, attempts,"
        " workflows, lock and message events (e.g. 30d); older rows are deleted.",
    ),
    _m("tls-cert", "tls_cert", "file", "PEM certificate (chain): HTTPS API, mutual TLS for peers."),
    _m("tls-key", "tls_key", "file", "PEM private key of --tls-cert."),
    _m(
        "ca",
        "tls_ca",
        "file",
        "CA bundle trusted for the leader's API and, with --tls-cert, peers.",
    ),
)

WORKER_SETTINGS: tuple[Setting, ...] = (
    _w(
        "worker-id",
        "worker_id",
        "text",
        "This worker's id (unique per process by default; give a stable id to keep one"
        " identity across restarts).",
        default_text="HOSTNAME-PID",
    ),
    _w(
        "master-url",
        "master_urls",
        "list",
        "Master URL(s), comma-separated.",
        env="AGENTFLOW_URL",  # the name every client command reads
    ),
    _w("group", "group", "text", "Worker group."),
    _w("slots", "slots", "int", "Tasks run at once.", default_text="one per CPU"),
    _w(
        "prefetch",
        "prefetch",
        "int",
        "Tasks held queued beyond the slots (-1: sized from measured task duration; 0: none).",
    ),
    _w("api-token", "api_token", "text", "Bearer token of the masters.", secret=True),
    _w("api-token-file", "api_token_file", "file", "Read --api-token from this file (not in ps)."),
    _w(
        "agent",
        "agents",
        "pairs",
        "NAME=TEMPLATE, e.g. claude='claude -p {prompt}' (repeatable).",
        repeatable=True,
    ),
    _w(
        "resources",
        "resources",
        "pairs",
        "Override what was detected: cpu=8,memory=16G,gpu=1.",
        repeatable=True,
    ),
    _w("labels", "labels", "pairs", "zone=a,os=linux (repeatable).", repeatable=True),
    _w("heartbeat-interval", "heartbeat_interval_s", "duration", "Heartbeat to the master."),
    _w(
        "report-interval",
        "report_interval_s",
        "duration",
        "Starts and output wait this long to share a frame.",
    ),
    _w("output-chunk-bytes", "output_chunk_bytes", "size", "Largest output chunk sent."),
    _w(
        "function-modules",
        "function_modules",
        "list",
        "Modules function tasks may import, e.g. 'mypkg.*,tools.jobs' (default: any).",
    ),
    _w(
        "allow-pickled-functions",
        "allow_pickled_functions",
        "bool",
        "Run functions sent by value (pickled by the SDK: lambdas, closures, functions of a "
        "script or notebook). Unpickling runs the sender's code as this worker's user.",
    ),
    _w(
        "runner-batch",
        "runner_batch",
        "int",
        "Queued Python calls sent to a free runner in one message, run there in order "
        "(1, the default: one call per message).",
    ),
    _w(
        "workspace-dir",
        "workspace_dir",
        "file",
        "Where git mirrors and task worktrees live.",
        default_text="$XDG_CACHE_HOME/agentflow/workspaces",
    ),
    _w("workspace-quota", "workspace_quota", "size", "Bytes one task's worktree may hold."),
    _w(
        "workspace-cache-max",
        "workspace_cache_max",
        "size",
        "Bytes of all git mirrors together; the least recently used unheld ones go first.",
    ),
    _w(
        "git-author",
        "git_author",
        "text",
        "Author of workspace commits, 'Name <email>' (the committer always).",
        default_text="AgentFlow <agentflow@HOST>",
    ),
    _w(
        "git-token-file",
        "git_token_file",
        "file",
        "A token for git over HTTPS, sent only under --git-token-url.",
    ),
    _w(
        "git-token-url",
        "git_token_url",
        "text",
        "URL prefix the git token is sent under (https, or http on loopback).",
    ),
    _w("git-token-header", "git_token_header", "text", "bearer or basic (user x-access-token)."),
    _w("git-credential-helper", "git_credential_helper", "text", "A git credential helper."),
    _w("git-ssh-command", "git_ssh_command", "text", "The ssh git runs for ssh:// remotes."),
    _w("git-timeout", "git_timeout_s", "duration", "Longest one git fetch or push may run."),
    _w("log-level", "log_level", "text", "debug, info, warning or error."),
    _w(
        "log-format",
        "log_format",
        "text",
        "text, or json: one JSON object per line (time, level, logger, message, worker id, ...).",
    ),
    _w("metrics-port", "metrics_port", "int", "Serve Prometheus /metrics on this port (0: off)."),
    _w("metrics-host", "metrics_host", "text", "Address the /metrics port listens on."),
    _w("ca", "tls_ca", "file", "CA bundle that verifies the masters' certificates."),
)
