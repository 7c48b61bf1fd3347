"""A master's SQL log, made from its configuration (``agentflow master --store URL``).

The master's service imports this module only when ``--store`` names a database, and the
store imports the database driver only when it connects: a master on the embedded Raft log
loads neither.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from agentflow.cluster.sql.history import HistorySettings, SqlHistory
from agentflow.cluster.sql.historystore import HistoryStore
from agentflow.cluster.sql.logconfig import SqlLogConfig
from agentflow.cluster.sql.sqllog import SqlLog
from agentflow.cluster.sql.store import LogStore
from agentflow.cluster.sql.url import StoreUrl, parse_store
from agentflow.config import MasterConfig, read_token_file
from agentflow.errors import ConfigError
from agentflow.state import StateMachine

__all__ = [
    "PASSWORD_ENV",
    "check_store",
    "sql_history",
    "sql_log",
    "sql_log_config",
    "store_password",
]

PASSWORD_ENV = "AGENTFLOW_STORE_PASSWORD"  # the database password, kept out of ps and files

_RAFT_ONLY = ("--peers", "--join", "--force-new-cluster")


def check_store(config: MasterConfig) -> None:
    """Refuse, before anything is bound or started, what does not go with ``--store``."""
    if not config.sql_store:
        if config.store_password_file is not None:
            raise ConfigError(
                "--store-password-file goes with a database --store (postgresql://...)"
            )
        return
    given = (bool(config.peers.strip()), config.join, config.force_new_cluster)
    for flag, on in zip(_RAFT_ONLY, given, strict=True):
        if on:
            raise ConfigError(
                f"{flag} is for the embedded Raft log (--store sqlite); masters on a SQL store"
                " share it by starting with the same --store"
            )
    if config.store_lease_s <= 0:
        raise ConfigError("--store-lease must be positive")
    if not 0 < config.store_poll_s < config.store_lease_s:
        raise ConfigError("--store-poll must be positive and shorter than --store-lease")
    if config.history_retention_s < 60:
        raise ConfigError("--history-retention must be at least a minute (e.g. 30d)")
    store_url(config)  # a malformed URL, a scheme this master does not know: one line


def store_password(config: MasterConfig, env: Mapping[str, str] | None = None) -> str | None:
    """The database password from ``--store-password-file`` or ``AGENTFLOW_STORE_PASSWORD``
    (None: the URL's own, if any)."""
    from_env = (os.environ if env is None else env).get(PASSWORD_ENV)
    if config.store_password_file is None:
        return from_env
    if from_env is not None:
        raise ConfigError(f"give {PASSWORD_ENV} or --store-password-file, not both")
    return read_token_file(config.store_password_file)


def store_url(config: MasterConfig) -> StoreUrl:
    """The parsed ``--store`` URL."""

    url = parse_store(config.store, store_password(config))
    if url is None:
        raise ConfigError("--store sqlite is the embedded Raft log, not a SQL store")
    return url


def sql_log_config(config: MasterConfig, shown_url: str) -> SqlLogConfig:
    """The SQL log's settings: renewal and the writer's margin are each a fifth of the lease."""
    share = config.store_lease_s / 5
    return SqlLogConfig(
        node_id=config.node_id,
        api_url=config.api_url,
        cluster_id=config.cluster_id,
        store_url=shown_url,
        lease_ttl_s=config.store_lease_s,
        renew_s=share,
        margin_s=share,
        poll_s=config.store_poll_s,
        snapshot_every=config.snapshot_every,
    )


def sql_log(config: MasterConfig, machine: StateMachine) -> SqlLog:
    """The SQL log of the master ``config`` describes, applying to ``machine``."""

    url = store_url(config)
    return SqlLog(sql_log_config(config, url.redacted()), machine, LogStore(url))


def sql_history(
    config: MasterConfig,
    machine: StateMachine,
    leads: Callable[[], bool],
    clock_ms: Callable[[], int],
) -> SqlHistory:
    """The task history in the store's tables, written while ``leads()`` (the log's writer);
    retention counts on ``clock_ms``, the clock that stamps the commands."""
    url = store_url(config)
    settings = HistorySettings(retention_ms=int(config.history_retention_s * 1000))
    return SqlHistory(
        machine, leads, HistoryStore(url), HistoryStore(url), settings=settings, clock_ms=clock_ms
    )
