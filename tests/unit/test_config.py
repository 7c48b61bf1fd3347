import pytest

from agentflow.config import MasterConfig, WorkerConfig, parse_duration, parse_size, resolve
from agentflow.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("250ms", 0.25), ("1h", 3600.0), ("2.5", 2.5), (7, 7.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", "5 minutes", ""])
def test_bad_durations_say_what_works(bad: str) -> None:
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(bad)


def test_sizes() -> None:
    assert parse_size("16M") == 16 << 20
    assert parse_size("512K") == 512 << 10
    assert parse_size("2G") == 2 << 30
    assert parse_size("100") == 100
    with pytest.raises(ConfigError):
        parse_size("lots")


def test_flags_beat_env_beat_file() -> None:
    env = {"AGENTFLOW_PORT": "7000", "AGENTFLOW_WORKER_LOSS_TIMEOUT_S": "45s"}
    file = {"port": 8000, "node_id": "from-file", "heartbeat_interval_s": "5s"}
    cfg = resolve(MasterConfig, {"port": 9000, "node_id": None}, env=env, file=file)
    assert cfg.port == 9000
    assert cfg.node_id == "from-file"
    assert cfg.worker_loss_timeout_s == 45.0
    assert cfg.heartbeat_interval_s == 5.0
    cfg2 = resolve(MasterConfig, {}, env=env, file=file)
    assert cfg2.port == 7000


def test_worker_master_urls_split_on_commas() -> None:
    cfg = resolve(WorkerConfig, {"worker_id": "w", "master_urls": "http://a:1,http://b:2"}, env={})
    assert cfg.master_urls == ("http://a:1", "http://b:2")
