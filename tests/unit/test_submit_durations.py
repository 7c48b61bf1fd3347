"""Durations as people write them (``90``, ``90s``, ``5m``, ``1h30m``, ``250ms``, ``1.5h``):
one parser for flags, environment and TOML, and a click type that refuses a bad one in one
line."""

from __future__ import annotations

import math

import click
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from agentflow.cli.params import DURATION, parse_resources
from agentflow.config import MasterConfig, resolve
from agentflow.config import parse_duration as config_parse_duration
from agentflow.durations import MAX_DURATION_S, format_duration, parse_duration
from agentflow.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1.5h", 5400.0),
        ("2d", 172_800.0),
        ("1h 30m", 5400.0),
        (" 30s ", 30.0),
        ("0", 0.0),
        ("0.5", 0.5),
        ("1m30s250ms", 90.25),
        (7, 7.0),
        (2.5, 2.5),
    ],
)
def test_the_forms_people_write(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("-5s", "negative"),
        ("-1", "negative"),
        (-1, "negative"),
        ("5x", "unknown unit 'x'"),
        ("5 minutes", "unknown unit 'minutes'"),
        ("5M", "unknown unit 'M'"),
        ("1e3", "unknown unit 'e'"),
        ("soon", "use a number and a unit"),
        ("nan", "use a number and a unit"),
        ("inf", "use a number and a unit"),
        (math.nan, "not a number"),
        (math.inf, "too long"),
        ("999999999999h", "too long"),
        ("9" * 40, "too long"),
        ("1" * 65, "longer than 64 characters"),
        ("30m1h", "largest first"),
        ("1m1m", "largest first"),
        ("1h30", "unit missing after 30"),
        (True, "not a duration"),
    ],
)
def test_refusals_are_one_line_that_says_why(bad: str | float, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_duration(bad)
    message = caught.value.detail
    assert message.startswith("invalid duration ") and why in message
    assert "\n" not in message


@given(st.integers(min_value=0, max_value=MAX_DURATION_S * 1000))
def test_format_then_parse_is_the_same_duration(millis: int) -> None:
    written = format_duration(millis / 1000)
    assert parse_duration(written) == millis / 1000
    assert format_duration(parse_duration(written)) == written


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=0, max_value=999_999))
def test_a_plain_number_is_seconds(whole: int, fraction: int) -> None:
    text = f"{whole}.{fraction:06d}"
    assert parse_duration(text) == float(text)
    assert parse_duration(str(whole)) == whole
    assert parse_duration(float(text)) == float(text)


@given(
    st.integers(min_value=0, max_value=100_000),  # 100,000 h: within the 100-year limit
    st.sampled_from([("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]),
)
def test_one_unit(count: int, unit: tuple[str, float]) -> None:
    name, size = unit
    assert parse_duration(f"{count}{name}") == pytest.approx(count * size, rel=1e-15)


def test_format_writes_the_largest_units_first() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(0.25) == "250ms"
    assert format_duration(90) == "1m30s"
    assert format_duration(0) == "0s"
    assert format_duration(90061.5) == "1d1h1m1s500ms"


def test_config_reads_the_same_durations() -> None:
    """Environment variables and TOML values take every form a flag takes."""
    assert config_parse_duration is parse_duration
    config = resolve(
        MasterConfig,
        {},
        env={"AGENTFLOW_WORKER_LOSS_TIMEOUT_S": "1m30s"},
        file={"lost_worker_retention_s": "1.5h", "lock_delay_s": 2},
    )
    assert config.worker_loss_timeout_s == 90.0
    assert config.lost_worker_retention_s == 5400.0
    assert config.lock_delay_s == 2.0
    with pytest.raises(ConfigError, match="unknown unit"):
        resolve(MasterConfig, {}, env={}, file={"idle_timeout_s": "5 minutes"})


def test_the_click_type_gives_seconds_and_one_line_errors() -> None:
    @click.command()
    @click.option("--timeout", type=DURATION)
    def cmd(timeout: float | None) -> None:
        click.echo(repr(timeout))

    runner = CliRunner()
    assert runner.invoke(cmd, ["--timeout", "1h30m"]).output == "5400.0\n"
    refused = runner.invoke(cmd, ["--timeout", "5x"])
    assert refused.exit_code == 2
    assert "Invalid value for '--timeout': invalid duration '5x': unknown unit" in refused.output
    assert "DURATION" in runner.invoke(cmd, ["--help"]).output


def test_resources_are_finite_amounts() -> None:
    assert parse_resources({"cpu": "2", "gpu": "1", "memory_mb": "512"}) == {
        "cpu": 2.0,
        "gpu": 1.0,
        "memory_mb": 512.0,
    }
    assert parse_resources({"memory": "1G"}) == {"memory_mb": 1024.0}
    for bad in ("lots", "nan", "inf", "-1"):
        with pytest.raises(ConfigError, match="resource cpu must be a number"):
            parse_resources({"cpu": bad})


def test_master_and_worker_flags_take_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flags reach the configuration as seconds (nothing is started here)."""
    import agentflow.worker
    from agentflow.cli import server
    from agentflow.config import WorkerConfig

    seen: list[MasterConfig | WorkerConfig] = []

    async def run_master(config: MasterConfig) -> None:
        seen.append(config)

    class Worker:
        def __init__(self, config: WorkerConfig, *_: object) -> None:
            self.config = config
            seen.append(config)

        async def run(self) -> None:
            return None

    monkeypatch.setattr(server, "run_master", run_master)
    monkeypatch.setattr(server, "setup_logging", lambda *args, **kwargs: None)
    monkeypatch.setattr(agentflow.worker, "Worker", Worker)
    runner = CliRunner()
    master = runner.invoke(
        server.master_command,
        ["--lost-worker-retention", "1h30m", "--worker-timeout", "90", "--raft-heartbeat", "50ms"],
    )
    assert master.exit_code == 0, master.output
    worker = runner.invoke(server.worker_command, ["--heartbeat-interval", "1.5m"])
    assert worker.exit_code == 0, worker.output
    master_config, worker_config = seen
    assert isinstance(master_config, MasterConfig) and isinstance(worker_config, WorkerConfig)
    assert master_config.lost_worker_retention_s == 5400.0
    assert master_config.worker_loss_timeout_s == 90.0
    assert master_config.raft_heartbeat_s == 0.05
    assert worker_config.heartbeat_interval_s == 90.0
