"""`--store`: the master's settings for a SQL store, the checks made before anything starts,
and the log a master is built over (design 20 §4)."""

from __future__ import annotations

import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from agentflow.api import service
from agentflow.cli import main
from agentflow.cluster.node import RaftLog
from agentflow.cluster.sql import wiring
from agentflow.cluster.sql.sqllog import SqlLog
from agentflow.config import MasterConfig
from agentflow.errors import ConfigError
from agentflow.settings import MASTER_SETTINGS
from agentflow.sources import layer, show_value
from agentflow.state import StateMachine
from agentflow.testing.ports import free_port

SQL = "postgresql://agentflow:s3cret@db.example:5432/agentflow"


def test_the_store_settings_and_their_defaults() -> None:
    by_key = {s.key: s for s in MASTER_SETTINGS}
    assert {"store", "store-password-file", "store-lease", "store-poll"} <= set(by_key)
    config = layer("master", {}, env={}).config()
    assert (config.store, config.store_lease_s, config.store_poll_s) == ("sqlite", 1.5, 0.05)
    assert not config.sql_store and config.store_password_file is None
    env = {"AGENTFLOW_STORE": SQL, "AGENTFLOW_STORE_LEASE": "3s", "AGENTFLOW_STORE_POLL": "20ms"}
    config = layer("master", {}, env=env).config()
    assert config.sql_store and (config.store_lease_s, config.store_poll_s) == (3.0, 0.02)
    assert show_value(by_key["store-lease"], 1.5) == "1500ms"
    assert config.history_retention_s == 30 * 86_400
    env = {"AGENTFLOW_HISTORY_RETENTION": "7d"}
    assert layer("master", {}, env=env).config().history_retention_s == 7 * 86_400


def test_the_store_url_is_shown_with_its_password_masked() -> None:
    store = next(s for s in MASTER_SETTINGS if s.key == "store")
    assert show_value(store, SQL) == "postgresql://agentflow:***@db.example:5432/agentflow"
    assert show_value(store, "mysql://u@h/db") == "mysql://u@h/db"
    assert show_value(store, "sqlite") == "sqlite"
    shown = CliRunner().invoke(main, ["config", "show", "-o", "json", "--store", SQL])
    assert shown.exit_code == 0, shown.output
    assert "s3cret" not in shown.output
    settings = json.loads(shown.output)["settings"]
    assert settings["store"]["value"] == "postgresql://agentflow:***@db.example:5432/agentflow"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--peers", "m2=127.0.0.1:7001"], "--peers is for the embedded Raft log"),
        (["--join"], "--join is for the embedded Raft log"),
        (["--force-new-cluster"], "--force-new-cluster is for the embedded Raft log"),
        (["--store-lease", "0"], "--store-lease must be positive"),
        (["--store-poll", "5s"], "--store-poll must be positive and shorter"),
        (["--history-retention", "10s"], "--history-retention must be at least a minute"),
    ],
)
def test_a_sql_store_refuses_raft_flags_in_one_line(flags: list[str], named: str) -> None:
    refused = CliRunner().invoke(main, ["master", "--store", SQL, *flags])
    assert refused.exit_code == 2, refused.output
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0]
    assert "s3cret" not in refused.stderr


def test_a_password_file_without_a_sql_store_is_refused() -> None:
    refused = CliRunner().invoke(main, ["master", "--store-password-file", "/nonexistent"])
    assert refused.exit_code == 2
    assert "--store-password-file goes with a database --store" in refused.stderr


def test_the_password_comes_from_the_file_or_the_environment(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    config = MasterConfig(store=SQL)
    assert wiring.store_password(config, {}) is None
    assert wiring.store_password(config, {wiring.PASSWORD_ENV: "from-env"}) == "from-env"
    with_file = replace(config, store_password_file=str(secret))
    assert wiring.store_password(with_file, {}) == "from-file"
    with pytest.raises(ConfigError, match="not both"):
        wiring.store_password(with_file, {wiring.PASSWORD_ENV: "x"})
    with pytest.raises(ConfigError, match="cannot read"):
        wiring.store_password(replace(config, store_password_file=str(tmp_path / "no")), {})


def test_the_log_settings_follow_the_lease() -> None:
    config = MasterConfig(node_id="m7", store=SQL, store_lease_s=2.0, store_poll_s=0.1)
    log_config = wiring.sql_log_config(config, "postgresql://agentflow:***@db.example/agentflow")
    assert (log_config.lease_ttl_s, log_config.renew_s, log_config.margin_s) == (2.0, 0.4, 0.4)
    assert (log_config.node_id, log_config.poll_s) == ("m7", 0.1)
    assert log_config.api_url == config.api_url and log_config.cluster_id == config.cluster_id
    assert log_config.snapshot_every == config.snapshot_every


def test_a_master_is_built_over_the_log_its_store_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine = StateMachine()
    raft = service.master_log(MasterConfig(data_dir=tmp_path), machine)
    assert isinstance(raft, RaftLog)
    made: list[Any] = []
    monkeypatch.setattr(wiring, "sql_log", lambda config, m: made.append((config.store, m)))
    service.master_log(MasterConfig(data_dir=tmp_path, store=SQL), machine)
    assert made == [(SQL, machine)]


async def test_a_master_on_a_sql_store_opens_no_peer_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built as `agentflow master --store ...` builds it (the store an in-process double)."""
    from tests.dictstore import DictDatabase, DictStore

    def sql_log(config: MasterConfig, machine: StateMachine) -> SqlLog:
        return SqlLog(wiring.sql_log_config(config, "dict://test"), machine, DictStore(db))

    db = DictDatabase()
    monkeypatch.setattr(wiring, "sql_log", sql_log)
    port = free_port()
    config = MasterConfig(data_dir=tmp_path, port=port, store=SQL, cluster_token="t" * 32)
    master = service.MasterService(config)
    assert isinstance(master.log, SqlLog)
    await master.start()
    try:
        host, raft_port = config.raft_address
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host, raft_port), timeout=5).close()
        assert not (tmp_path / "raft.db").exists() and not (tmp_path / "state.db").exists()
        assert db.cluster_id == config.cluster_id  # the log migrated the store at start
    finally:
        await master.stop()
