"""The command line as a user meets it: one-line errors, exit codes, local mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.procs import Processes, free_port, live_workers, wait_until

CLI = str(Path(sys.executable).parent / "agentflow")
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_unreachable_master_is_one_line_and_nonzero() -> None:
    done = run("tasks", "--master-url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 7
    assert done.stderr.startswith("error: no master reachable at http://127.0.0.1:")
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_bad_master_url_and_bad_flags() -> None:
    done = run("tasks", "--master-url", "ftp://nope")
    assert done.returncode == 2 and done.stderr.startswith("error: master URL must start")
    done = run("master", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2
    assert "without --api-token" in done.stderr
    done = run("master", "--worker-timeout", "soon")
    assert done.returncode == 2 and "invalid duration 'soon'" in done.stderr


def test_run_rejects_a_bad_file_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks:\n  - name: x\n    command: 'true'\n    priority: whenever\n")
    done = run("run", str(bad))
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"error: {bad}: task 1: priority")
    assert len(done.stderr.strip().splitlines()) == 1
    missing = run("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_local_mode_runs_a_task_list_file() -> None:
    done = run("run", str(ROOT / "examples" / "tasks.yaml"), "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "succeeded on attempt 2" in done.stdout
    assert done.stdout.count("completed") == 8


def test_local_mode_exits_nonzero_when_a_task_fails(tmp_path: Path) -> None:
    spec = tmp_path / "tasks.json"
    spec.write_text('[{"command": "echo fine"}, {"name": "broken", "command": "exit 9"}]')
    done = run("run", str(spec), "--workers", "1")
    assert done.returncode == 1
    assert "1 of 2 task(s) did not complete" in done.stderr


def test_worker_drain_and_activate_from_the_cli(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    wait_until(lambda: live_workers(url) == 1)
    drained = run("worker", "drain", "w1", "--master-url", url)
    assert drained.returncode == 0, drained.stderr
    assert drained.stdout.startswith("w1 draining")
    back = run("worker", "activate", "w1", "--master-url", url)
    assert back.stdout.startswith("w1 active")
    missing = run("worker", "drain", "nope", "--master-url", url)
    assert missing.returncode == 4 and missing.stderr.strip() == "error: no worker nope"
