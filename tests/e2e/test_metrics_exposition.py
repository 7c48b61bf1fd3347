"""The /metrics of a real master and worker: promtool accepts them, every metric the shipped
Grafana dashboard and alert rules name is in them, and ``--log-format json`` writes JSON lines.

promtool comes with Debian's ``prometheus`` package (``make sysdeps`` installs it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentflow.testing.ports import free_port
from tests.e2e.procs import BIN, Processes, live_workers, wait_until

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "agentflow.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC_NAME = re.compile(r"\b((?:agentflow|process)_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is absent (Debian package prometheus; `make sysdeps` installs it)")
    return promtool


def _names(exposition: str) -> set[str]:
    """Every family and sample name of an exposition."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def _exposed(name: str, exposed: set[str]) -> bool:
    """``name`` is a family or sample of ``exposed`` (a histogram's ``_bucket`` counts when
    its family is declared, with or without samples yet)."""
    return name in exposed or any(
        name.endswith(suffix) and name.removesuffix(suffix) in exposed for suffix in SUFFIXES
    )


def _named_in_deploy_files() -> set[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return set(METRIC_NAME.findall("\n".join(exprs))) | set(METRIC_NAME.findall(ALERTS.read_text()))


def _check_metrics(promtool: str, exposition: str) -> None:
    done = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _json_lines(path: Path) -> Iterator[dict[str, object]]:
    for line in path.read_text().splitlines():
        yield json.loads(line)  # every line is one object: no text line slips through


@pytest.fixture
def scraped(procs: Processes) -> tuple[str, str, Path, Path]:
    """A master and a worker (JSON logs, worker metrics) that ran one task; both scraped."""
    master, url = procs.master("m1", None, "--log-level", "info", "--log-format", "json")
    metrics_port = free_port()
    worker = procs.worker(
        "w1",
        url,
        "--slots",
        "1",
        "--metrics-port",
        str(metrics_port),
        "--log-format",
        "json",
        "--log-level",
        "info",
    )
    wait_until(lambda: live_workers(url) == 1, what="the worker to register")
    done = subprocess.run(
        [str(BIN / "agentflow"), "submit", "--master-url", url, "--wait", "-c", "true"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    with httpx.Client(timeout=10) as client:
        assert client.get(f"{url}/api/v1/tasks/t-none").status_code == 404
        master_text = client.get(f"{url}/metrics").text
        worker_text = client.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert client.get(f"http://127.0.0.1:{metrics_port}/other").status_code == 404
    return master_text, worker_text, master.log_path, worker.log_path


def test_promtool_accepts_master_and_worker_expositions(scraped: tuple[str, str, Path, Path]):
    promtool = _promtool()
    master_text, worker_text, _, _ = scraped
    _check_metrics(promtool, master_text)
    _check_metrics(promtool, worker_text)
    names = _names(master_text)
    # Labelled by the route's template, never the raw path; the task was timed by group/kind.
    assert 'route="/api/v1/tasks/{task_id}"' in master_text
    assert "t-none" not in master_text
    assert (
        'agentflow_task_run_seconds_count{group="default",kind="command",status="completed"}'
        in (master_text)
    )
    assert 'agentflow_task_queue_wait_seconds_count{group="default",kind="command"} 1.0' in (
        master_text
    )
    for name in ("agentflow_raft_fsync_seconds_bucket", "process_cpu_seconds_total"):
        assert name in names
    assert "agentflow_worker_attempts_finished_total" in _names(worker_text)


def test_dashboard_and_alerts_name_only_exposed_metrics(scraped: tuple[str, str, Path, Path]):
    promtool = _promtool()
    master_text, worker_text, _, _ = scraped
    exposed = _names(master_text) | _names(worker_text)
    named = _named_in_deploy_files()
    assert len(named) > 20
    missing = {n for n in named if not _exposed(n, exposed)}
    assert not missing, f"named in deploy/ but not exposed: {sorted(missing)}"
    done = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = set(re.findall(r"alert: (\w+)", ALERTS.read_text()))
    assert {"AgentFlowNoLeader", "AgentFlowFollowerLagging", "AgentFlowQueueWaitRising"} <= alerts
    assert {"AgentFlowWorkersLost", "AgentFlowDiskFsyncSlow"} <= alerts


def test_json_logs_carry_node_term_and_worker(scraped: tuple[str, str, Path, Path]):
    _, _, master_log, worker_log = scraped
    master_lines = list(_json_lines(master_log))
    assert master_lines
    for line in master_lines:
        assert {"time", "level", "logger", "message", "node_id"} <= set(line)
        assert line["node_id"] == "m1"
    assert any(isinstance(line.get("term"), int) for line in master_lines)
    session = [line for line in master_lines if "worker w1 connected" in str(line["message"])]
    assert session and session[0]["worker_id"] == "w1"
    worker_lines = list(_json_lines(worker_log))
    assert worker_lines and all(line["worker_id"] == "w1" for line in worker_lines)
