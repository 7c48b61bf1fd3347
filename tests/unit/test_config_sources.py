"""Where settings come from (issue 13): TOML keys are the flag names, an unknown key or a wrong
type is refused in one line naming it, flag > environment > file > default, and each value
says where it came from."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from agentflow.config import MasterConfig, WorkerConfig, resolve
from agentflow.errors import ConfigError
from agentflow.settings import MASTER_SETTINGS, WORKER_SETTINGS
from agentflow.sources import Origin, check_table, layer, read_config_file, show_value


def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentflow.toml"
    path.write_text(text)
    return path


def test_keys_are_the_flag_names(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        '[master]\nnode-id = "m7"\nworker-timeout = "45s"\napi-token-file = "/t"\n'
        'public-host = ["a.example", "b.example"]\nmax-request-bytes = "1M"\n'
        '[worker]\nworker-id = "w1"\nlabels = {zone = "a"}\nagent = ["x=echo {prompt}"]\n',
    )
    master = layer("master", {}, env={}, file=read_config_file(path, "master")).config()
    assert master.node_id == "m7"
    assert master.worker_loss_timeout_s == 45.0
    assert master.api_token_file == "/t"
    assert master.public_hosts == ("a.example", "b.example")
    assert master.max_request_bytes == 1 << 20
    worker = layer("worker", {}, env={}, file=read_config_file(path, "worker")).config()
    assert (worker.worker_id, worker.labels, worker.agents) == (
        "w1",
        {"zone": "a"},
        {"x": "echo {prompt}"},
    )


@pytest.mark.parametrize(
    ("table", "found"),
    [
        ("prot = 1", "unknown key 'prot' (did you mean 'port'?); known keys: node-id, host, port,"),
        ("worker-id = 'w'", "unknown key 'worker-id' (a [worker] setting)"),
        ("colour = 'blue'", "unknown key 'colour'; known keys: node-id"),
    ],
)
def test_an_unknown_key_is_named_with_the_known_ones(
    tmp_path: Path, table: str, found: str
) -> None:
    path = _file(tmp_path, f"[master]\n{table}\n")
    with pytest.raises(ConfigError) as caught:
        read_config_file(path, "master")
    assert f"config file {path} [master]: {found}" in caught.value.detail
    assert "\n" not in caught.value.detail


@pytest.mark.parametrize(
    ("table", "found"),
    [
        ('port = "x"', "port: expected an integer, got 'x' (string)"),
        ("insecure = 1", "insecure: expected true or false, got 1 (integer)"),
        ("node-id = 7", "node-id: expected a string, got 7 (integer)"),
        ("worker-timeout = true", "worker-timeout: expected a duration such as 250ms"),
        ('worker-timeout = "soon"', "worker-timeout: invalid duration 'soon'"),
        ("public-host = [1]", "public-host: expected a comma-separated string or an array"),
        ("max-request-bytes = 1.5", "max-request-bytes: expected a size such as 512K"),
    ],
)
def test_a_wrong_type_names_the_key_and_the_type(tmp_path: Path, table: str, found: str) -> None:
    path = _file(tmp_path, f"[master]\n{table}\n")
    with pytest.raises(ConfigError, match=r"^config file .* \[master\] ") as caught:
        read_config_file(path, "master")
    assert found in caught.value.detail


def test_settings_go_in_a_role_table(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"unknown top-level key 'port'; it goes under \[master\]"
    ):
        read_config_file(_file(tmp_path, "port = 1\n"), "worker")
    with pytest.raises(ConfigError, match="master must be a table"):
        read_config_file(_file(tmp_path, "master = 1\n"), "master")
    with pytest.raises(ConfigError, match=r"key 'mastr' \(did you mean \[master\]\?\)"):
        read_config_file(_file(tmp_path, "[mastr]\nport = 1\n"), "worker")


def test_durations_in_a_file_take_units_or_seconds() -> None:
    table = check_table({"heartbeat-interval": "5m", "report-interval": 0.5}, "worker", "f")
    assert table == {"heartbeat-interval": 300.0, "report-interval": 0.5}
    assert check_table({"heartbeat-interval": "250ms"}, "worker", "f") == {
        "heartbeat-interval": 0.25
    }


def test_flag_beats_env_beats_file_beats_default() -> None:
    file = check_table({"port": 8000, "node-id": "f", "host": "10.0.0.1"}, "master", "f")
    env = {"AGENTFLOW_PORT": "7000", "AGENTFLOW_NODE_ID": "e"}
    got = layer("master", {"port": "9000"}, env=env, file=file, file_name="a.toml")
    assert (got.values["port"], got.values["node-id"], got.values["host"]) == (
        9000,
        "e",
        "10.0.0.1",
    )
    assert "data-dir" not in got.values
    assert {k: str(got.origins[k]) for k in ("port", "node-id", "host", "data-dir")} == {
        "port": "flag --port",
        "node-id": "env AGENTFLOW_NODE_ID",
        "host": "file:a.toml",
        "data-dir": "default",
    }
    assert got.origins["data-dir"] == Origin(source="default")


def test_a_flag_not_given_leaves_the_next_source() -> None:
    got = layer("worker", {"labels": (), "slots": None}, env={"AGENTFLOW_SLOTS": "3"})
    assert got.values == {"slots": 3}
    flags = {"labels": ("a=1,b=2", "c=3"), "master_urls": ("http://x", "http://y")}
    many = layer("worker", flags, env={})
    assert many.values["labels"] == {"a": "1", "b": "2", "c": "3"}
    assert many.values["master-url"] == ("http://x", "http://y")


def test_bad_env_and_flag_values_name_their_source() -> None:
    with pytest.raises(ConfigError, match=r"^environment variable AGENTFLOW_SLOTS: expected an "):
        layer("worker", {}, env={"AGENTFLOW_SLOTS": "many"})
    with pytest.raises(ConfigError, match=r"^--labels: expected NAME=VALUE, got 'zone'"):
        layer("worker", {"labels": ("zone",)}, env={})


def test_names_in_use_before_still_work(tmp_path: Path) -> None:
    """The master's file keys were its field names, and env vars were AGENTFLOW_<FIELD>."""
    path = _file(tmp_path, '[master]\nworker_loss_timeout_s = "40s"\napi_token_file = "/t"\n')
    file = read_config_file(path, "master")
    assert file == {"worker-timeout": 40.0, "api-token-file": "/t"}
    env = {"AGENTFLOW_HEARTBEAT_INTERVAL_S": "3s", "AGENTFLOW_TLS_CA": "/ca.pem"}
    got = layer("master", {}, env=env, file=file)
    assert (got.values["heartbeat-interval"], got.values["ca"]) == (3.0, "/ca.pem")
    assert str(got.origins["heartbeat-interval"]) == "env AGENTFLOW_HEARTBEAT_INTERVAL_S"
    newer = {**env, "AGENTFLOW_HEARTBEAT_INTERVAL": "4s"}
    assert layer("master", {}, env=newer).values["heartbeat-interval"] == 4.0
    both = _file(tmp_path, "[master]\nnode_id = 'a'\nnode-id = 'b'\n")
    with pytest.raises(
        ConfigError, match=r"'node_id' and 'node-id' are one setting; keep 'node-id'"
    ):
        read_config_file(both, "master")
    worker = layer("worker", {}, env={"AGENTFLOW_URL": "http://a:1,http://b:2"}).config(
        worker_id="w"
    )
    assert worker.master_urls == ("http://a:1", "http://b:2")


def test_the_worker_file_takes_only_flag_names(tmp_path: Path) -> None:
    """The worker had no file before, so there is no older spelling to keep."""
    path = _file(tmp_path, "[worker]\nworker_id = 'w'\n")
    with pytest.raises(
        ConfigError, match=r"unknown key 'worker_id' \(did you mean 'worker-id'\?\)"
    ):
        read_config_file(path, "worker")


def test_resolve_keeps_its_signature() -> None:
    config = resolve(MasterConfig, {"port": 9000}, env={}, file={"node-id": "x"})
    assert (config.port, config.node_id) == (9000, "x")


@pytest.mark.parametrize(
    ("cls", "settings"), [(MasterConfig, MASTER_SETTINGS), (WorkerConfig, WORKER_SETTINGS)]
)
def test_every_field_is_one_setting_and_each_env_var_is_named_after_its_flag(
    cls: type, settings: tuple
) -> None:
    assert sorted(s.field for s in settings) == sorted(f.name for f in fields(cls))
    assert len({s.key for s in settings}) == len(settings)
    for s in settings:
        expected = "AGENTFLOW_URL" if s.key == "master-url" else None
        assert s.envvar == (expected or "AGENTFLOW_" + s.key.upper().replace("-", "_"))


def test_values_are_shown_as_written() -> None:
    by_key = {s.key: s for s in MASTER_SETTINGS}
    assert show_value(by_key["worker-timeout"], 30.0) == "30s"
    assert show_value(by_key["raft-heartbeat"], 0.1) == "100ms"
    assert show_value(by_key["lost-worker-retention"], 5400.0) == "90m"
    assert show_value(by_key["max-request-bytes"], 8 << 20) == "8M"
    assert show_value(by_key["public-host"], ("a", "b")) == "a,b"
    assert show_value(by_key["peers"], "") == "-"
