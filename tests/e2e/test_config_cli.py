"""Configuration as a user meets it (issue 13), through the real ``agentflow`` commands: a TOML
file whose keys are the flag names, for the master and the worker alike; an unknown key is one
line and a non-zero exit; ``agentflow config show`` says where each value came from; ``--help``
shows each option's environment variable."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx

from agentflow.testing.ports import free_port
from tests.e2e.procs import BIN, Proc, Processes, _healthy, wait_until

CLI = str(BIN / "agentflow")
TOKEN = "s3cret-token-value"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLOW_")}
    return subprocess.run(
        args, check=False, capture_output=True, text=True, timeout=30, env={**clean, **(env or {})}
    )


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agentflow.toml"
    path.write_text(text)
    return path


def test_config_show_says_where_each_value_came_from(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'[master]\nnode-id = "m7"\nworker-timeout = "45s"\nport = 7000\napi-token = "{TOKEN}"\n',
    )
    shown = _run(
        CLI, "config", "show", "--config", str(path), "--port", "7100",
        env={"AGENTFLOW_HOST": "127.0.0.2"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    rows = {line.split()[0]: line.split() for line in shown.stdout.splitlines()}
    assert rows["KEY"] == ["KEY", "VALUE", "SOURCE"]
    assert rows["node-id"] == ["node-id", "m7", f"file:{path}"]
    assert rows["worker-timeout"] == ["worker-timeout", "45s", f"file:{path}"]
    assert rows["port"] == ["port", "7100", "flag", "--port"]
    assert rows["host"] == ["host", "127.0.0.2", "env", "AGENTFLOW_HOST"]
    assert rows["heartbeat-interval"] == ["heartbeat-interval", "10s", "default"]
    assert rows["api-token"][1] == "********"
    assert TOKEN not in shown.stdout


def test_config_show_as_json_for_a_worker(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        f'[worker]\nworker-id = "w-file"\nlabels = {{zone = "a"}}\napi-token = "{TOKEN}"\n'
        'heartbeat-interval = "5s"\n',
    )
    shown = _run(
        CLI, "config", "show", "--role", "worker", "--config", str(path), "-o", "json",
        "--slots", "3", env={"AGENTFLOW_URL": "http://127.0.0.1:1"},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    settings = document["settings"]
    assert document["role"] == "worker"
    assert settings["worker-id"] == {"value": "w-file", "source": f"file:{path}"}
    assert settings["labels"] == {"value": {"zone": "a"}, "source": f"file:{path}"}
    assert settings["heartbeat-interval"] == {"value": 5.0, "source": f"file:{path}"}
    assert settings["slots"] == {"value": 3, "source": "flag --slots"}
    assert settings["master-url"] == {
        "value": ["http://127.0.0.1:1"],
        "source": "env AGENTFLOW_URL",
    }
    assert settings["group"] == {"value": "default", "source": "default"}
    assert settings["api-token"]["value"] == "********"
    assert TOKEN not in shown.stdout


def test_an_unknown_key_is_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    path = _config(tmp_path, '[master]\nprot = 7000\n[worker]\nworker_id = "w"\n')
    for command in ([CLI, "master"], [str(BIN / "agentflow-worker")], [CLI, "config", "show"]):
        done = _run(*command, "--config", str(path))
        role = "worker" if "worker" in command[0] else "master"
        typo, close = ("worker_id", "worker-id") if role == "worker" else ("prot", "port")
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith(f"error: config file {path} [{role}]: unknown key {typo!r}")
        assert f"(did you mean {close!r}?); known keys: " in lines[0]
    wrong = _config(tmp_path, '[master]\nport = "x"\n')
    done = _run(CLI, "master", "--config", str(wrong))
    assert (done.returncode, done.stderr) == (
        2,
        f"error: config file {wrong} [master] port: expected an integer, got 'x' (string)\n",
    )


def test_the_worker_runs_with_the_settings_of_its_config_file(
    procs: Processes, tmp_path: Path
) -> None:
    _, url = procs.master("m1")
    path = _config(
        tmp_path,
        f'[worker]\nworker-id = "w-from-file"\nmaster-url = "{url}"\ngroup = "gpu"\n'
        'labels = {zone = "a", os = "linux"}\nresources = {cpu = 3}\nlog-level = "warning"\n',
    )
    worker = Proc([str(BIN / "agentflow-worker"), "--config", str(path)], tmp_path / "w.log")
    procs.procs.append(worker)

    def registered() -> dict[str, object] | None:
        workers = httpx.get(url + "/api/v1/workers", timeout=5).json()["workers"]
        return next((w for w in workers if w["id"] == "w-from-file"), None)

    wait_until(lambda: registered() or not worker.alive(), 20, "the worker from the file")
    seen = registered()
    assert seen is not None, worker.log()
    assert seen["group"] == "gpu"
    assert seen["labels"] == {"zone": "a", "os": "linux"}
    assert seen["resources"]["cpu"] == 3.0  # type: ignore[index]


def test_help_shows_each_option_env_var_and_the_precedence() -> None:
    master = _run(CLI, "master", "--help")
    assert master.returncode == 0
    text = " ".join(master.stdout.split())  # undo click's wrapping
    for var in ("AGENTFLOW_PORT", "AGENTFLOW_WORKER_TIMEOUT", "AGENTFLOW_CONFIG", "AGENTFLOW_CA"):
        assert f"env var: {var}" in text
    assert "flag, else its environment variable" in text
    assert "--worker-timeout DURATION" in text
    assert "default: 30s" in text
    worker = _run(str(BIN / "agentflow-worker"), "--help")
    text = " ".join(worker.stdout.split())
    assert "--config FILE" in text
    assert "env var: AGENTFLOW_URL" in text
    assert "env var: AGENTFLOW_LABELS" in text


def test_the_master_runs_with_the_settings_of_its_config_file(tmp_path: Path) -> None:
    port, raft_port = free_port(), free_port()
    path = _config(
        tmp_path,
        f'[master]\nnode-id = "m-file"\nport = {port}\nraft-port = {raft_port}\n'
        f'data-dir = "{tmp_path / "data"}"\nlog-level = "warning"\n',
    )
    master = Proc([str(BIN / "agentflow-master"), "--config", str(path)], tmp_path / "m.log")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url, master), 20, "the master from the file")
        status = httpx.get(url + "/api/v1/cluster", timeout=5).json()
        assert "m-file" in json.dumps(status), status
        assert (tmp_path / "data").is_dir()
    finally:
        master.stop()
