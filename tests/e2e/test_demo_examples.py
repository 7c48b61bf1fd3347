"""The other example files and the refusals of `agentflow run` around agents."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.e2e.procs import free_port

CLI = str(Path(sys.executable).parent / "agentflow")
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "run", *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def rows(stdout: str) -> dict[str, list[str]]:
    found = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            key, *cells = (cell.strip() for cell in line.strip("│").split("│"))
            found[key] = cells
    return found


def test_the_pipeline_example_runs_and_is_drawn() -> None:
    done = run("examples/pipeline.yaml")
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    assert [cells[0] for cells in table.values()] == ["completed"] * 6
    assert table["unit-tests"][-1] == "120 passed"  # the last output line
    assert re.search(r"^critical path \(\*\): checkout -> .* -> notify, ", done.stdout, re.M)
    assert re.search(r"^unit-tests\s+│ 120 passed$", done.stderr, re.M)  # shown live


def test_the_task_list_table_has_attempts_and_last_lines() -> None:
    done = run("examples/tasks.yaml")
    assert done.returncode == 0, done.stderr
    table = rows(done.stdout)
    header = next(line for line in done.stdout.splitlines() if line.startswith("┃"))
    assert [c.strip() for c in header.strip("┃").split("┃")][3:] == [
        "attempts",
        "time",
        "last output line",
    ]
    assert table["flaky-then-ok"][2:] == ["2", table["flaky-then-ok"][3], "succeeded on attempt 2"]
    assert table["slow-step"][2] == "1"


def test_agent_refusals_are_one_line_before_anything_runs(tmp_path: Path) -> None:
    spec = tmp_path / "ask.yaml"
    spec.write_text("tasks:\n  - id: ask\n    agent: claude\n    prompt: hello\n")
    missing = run(str(spec))
    assert missing.returncode == 2
    assert missing.stderr == (
        f"error: {spec}: task ask runs agent 'claude', which the local workers lack:"
        " give --agent claude='CMD {prompt}'\n"
    )
    remote = run(
        str(spec),
        "--agent",
        "claude=claude -p {prompt}",
        "--master-url",
        f"http://127.0.0.1:{free_port()}",
    )
    assert remote.returncode == 2
    assert remote.stderr.startswith("error: --agent sets up local workers")
    for bad, why in [
        ("claude", "--agent looks like NAME='CMD {prompt}'"),
        ("claude=sh -c {prompt}", "agent claude: {prompt} would be code for sh to run"),
        ("claude=no-such-agent-cli {prompt}", "agent claude: no-such-agent-cli is not installed"),
    ]:
        refused = run(str(spec), "--agent", bad)
        assert refused.returncode == 2 and refused.stderr.startswith(f"error: {why}"), bad
        assert len(refused.stderr.splitlines()) == 1
