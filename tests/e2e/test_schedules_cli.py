"""``agentflow schedule`` as a user meets it, against a real master and worker: a schedule
that runs, list and show, pause and resume, a workflow file, delete; every refusal one line on
stderr with a non-zero exit, and nothing created by it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.e2e.procs import Processes, wait_until

CLI = str(Path(sys.executable).parent / "agentflow")


def run(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "schedule", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ | {"AGENTFLOW_URL": url},  # an option after `--` is the command's
    )


def shown(url: str, name: str) -> dict[str, Any]:
    done = run(url, "show", name, "-o", "json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def refused(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode != 0, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], done.stderr


def test_add_run_pause_resume_and_delete(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master("m1")
    procs.worker("w1", url, "--slots", "2")
    done = run(url, "add", "tick", "--every", "1s", "--overlap", "skip", "--", "echo", "tick")
    assert done.returncode == 0, done.stderr
    assert "every 1s" in done.stdout
    wait_until(lambda: shown(url, "tick")["runs"] >= 2, 30, "two runs")
    view = shown(url, "tick")
    task = subprocess.run(
        [CLI, "status", view["last_task_id"], "--master-url", url, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(task.stdout)["idempotency_key"] == view["last_run_key"]
    listed = run(url, "list")
    assert listed.returncode == 0 and "tick" in listed.stdout and "every 1s" in listed.stdout
    assert run(url, "pause", "tick").stdout.strip() == "tick: paused"
    runs = shown(url, "tick")["runs"]
    assert shown(url, "tick")["next_run"] is None and shown(url, "tick")["runs"] == runs
    assert run(url, "resume", "tick").stdout.startswith("tick: active, next run ")
    wait_until(lambda: shown(url, "tick")["runs"] > runs, 30, "a run after resuming")

    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: nightly\ntasks:\n  - id: a\n    command: 'true'\n"
        "  - id: b\n    command: 'true'\n    dependencies: [a]\n"
    )
    done = run(
        url,
        "add",
        "nightly",
        "--cron",
        "0 3 * * *",
        "--timezone",
        "Asia/Tokyo",
        "--workflow",
        str(flow),
    )
    assert done.returncode == 0, done.stderr
    assert shown(url, "nightly")["workflow"]["name"] == "nightly"
    assert run(url, "delete", "tick").stdout.strip() == "tick: deleted"
    refused(run(url, "show", "tick"), "no schedule 'tick'")


def test_refusals_are_one_line_and_create_nothing(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master("m1")
    refused(run(url, "add", "x", "--cron", "0 25 * * *", "--", "true"), "invalid cron expression")
    refused(run(url, "add", "x", "--cron", "* * * *", "--", "true"), "must have 5 fields")
    refused(
        run(url, "add", "x", "--cron", "0 3 * * *", "--timezone", "Nowhere/City", "--", "true"),
        "unknown time zone",
    )
    refused(run(url, "add", "x", "--every", "soon", "--", "true"), "invalid duration")
    refused(run(url, "add", "x", "--every", "10ms", "--", "true"), "every is from 1s")
    refused(run(url, "add", "x", "--every", "1m"), "give one of")
    refused(run(url, "add", "x", "--", "true"), "give one of --cron and --every")
    cyclic = tmp_path / "cyclic.yaml"
    cyclic.write_text(
        "tasks:\n  - id: a\n    command: 'true'\n    dependencies: [b]\n"
        "  - id: b\n    command: 'true'\n    dependencies: [a]\n"
    )
    refused(run(url, "add", "x", "--every", "1m", "--workflow", str(cyclic)), "cycle")
    refused(run(url, "pause", "missing"), "no schedule 'missing'")
    listed = run(url, "list", "-o", "json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
