"""`make demo`: the agent workflow of examples/demo.yaml, run as a user runs it.

The real command (`agentflow run examples/demo.yaml`, from the checkout, as the Makefile runs
it) in a subprocess; everything is checked from what it prints and its exit code.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

CLI = str(Path(sys.executable).parent / "agentflow")
ROOT = Path(__file__).resolve().parents[2]
DEMO = "examples/demo.yaml"
STEPS = ("plan", "api", "ui", "docs", "review")
AGENTS = ("api", "ui", "docs")


def run_demo(*extra: str) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = subprocess.run(
        [CLI, "run", DEMO, *extra],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},  # table rows on one line each
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    print(f"agentflow run {DEMO} {' '.join(extra)}: {time.monotonic() - started:.2f}s")
    print(done.stderr, done.stdout, sep="\n")
    return done


def table(stdout: str) -> dict[str, dict[str, str]]:
    """The results table: task -> {column: cell}."""
    rows = [line for line in stdout.splitlines() if line.startswith(("┃", "│"))]
    cells = [[c.strip() for c in row.strip("┃│").split("┃" if "┃" in row else "│")] for row in rows]
    header, body = cells[0], cells[1:]
    return {row[0]: dict(zip(header, row, strict=True)) for row in body}


def said(stderr: str, step: str) -> list[str]:
    """What the live view showed of one step, in order."""
    prefix = re.compile(rf"^{re.escape(step)}\s+│ (.*)$")
    return [m.group(1) for line in stderr.splitlines() if (m := prefix.match(line))]


def test_the_makefile_runs_this_command() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^demo:.*\n\t\$\(VENV\)/bin/agentflow run {DEMO}\n", makefile, re.M)


def test_demo_runs_the_agent_workflow() -> None:
    done = run_demo()
    assert done.returncode == 0, done.stderr

    rows = table(done.stdout)
    assert set(rows) == set(STEPS)
    assert {k: r["status"] for k, r in rows.items()} == dict.fromkeys(STEPS, "completed")
    assert {k: r["attempts"] for k, r in rows.items()} == {
        **dict.fromkeys(STEPS, "1"),
        "ui": "2",  # its first attempt crashed holding the lock, and it was retried
    }
    assert all(re.fullmatch(r"\d+\.\d\ds", r["time"]) for r in rows.values())
    assert rows["plan"]["last output line"] == "plan written: 3 parts, for api, ui, docs"
    for agent in AGENTS:
        assert re.fullmatch(
            r"handed off to review: token \d+, heard from 2", rows[agent]["last output line"]
        )
    assert rows["review"]["last output line"] == "approved: 3 parts, 9 messages between the agents"

    # The retry, live: attempt 1 took the lock and crashed; the master freed it; attempt 2 wrote.
    ui = said(done.stderr, "ui")
    assert "attempt 1 crashes while holding the lock (STANDIN_FAIL_ATTEMPTS)" in ui
    assert "↻ attempt 1 failed (exit code 1); retrying" in ui
    assert "✓ completed" in ui[-1] and "after 2 attempts" in ui[-1]

    # Messages: each agent heard from the two others; the reviewer got three hand-offs.
    for agent in AGENTS:
        heard = [line for line in said(done.stderr, agent) if line.startswith("heard from ")]
        assert sorted(line.split(":")[0] for line in heard) == sorted(
            f"heard from {other}" for other in AGENTS if other != agent
        )
    review = said(done.stderr, "review")
    assert "hand-offs received: api, docs, ui" in review

    # The lock, in turn: four grants (the crashed attempt's too), the notes written with
    # rising tokens, and a late write with the first token refused. (Lines of different steps
    # may show in any order, so grants are compared as a set.)
    granted = [
        int(m.group(1))
        for line in done.stderr.splitlines()
        if (m := re.search(r"took lock \S+ with fencing token (\d+)", line))
    ]
    assert len(set(granted)) == 4, granted
    notes = [int(m.group(1)) for line in review if (m := re.match(r"\s*\[token (\d+)\]", line))]
    assert len(notes) == 3 and notes == sorted(set(notes)), review
    assert set(notes) < set(granted)  # the crashed attempt's grant wrote nothing
    assert f"fencing tokens {' < '.join(map(str, notes))}: rose" in review
    assert any(
        line.startswith(f"a late write with token {notes[0]} is refused: token {notes[0]}")
        for line in review
    )

    # The DAG, drawn with its critical path through the retried step.
    assert re.search(r"^critical path \(\*\): plan -> ui -> review, \d+\.\d\ds;", done.stdout, re.M)
    assert re.search(r"^\s+level 0\s+\* plan ", done.stdout, re.M)
    assert re.search(r"^\s+\* ui .*<- plan\s+\(2 attempts\)$", done.stdout, re.M)
    assert re.search(r"^\s+level 2\s+\* review .*<- api, ui, docs$", done.stdout, re.M)
    assert re.search(r"^workflow wf-\w+ completed in ", done.stdout, re.M)


def test_the_same_file_runs_with_another_agent(tmp_path: Path) -> None:
    other = tmp_path / "other_agent.py"
    other.write_text(
        "import os, sys\n"
        "print('other agent in', os.environ['AGENTFLOW_TASK_ID'], 'on', sys.argv[1].split()[0])\n"
    )
    done = run_demo("--agent", f"coder={sys.executable} {other} {{prompt}}")
    assert done.returncode == 0, done.stderr
    rows = table(done.stdout)
    assert {k: r["attempts"] for k, r in rows.items()} == dict.fromkeys(STEPS, "1")
    assert {r["last output line"].split()[-1] for r in rows.values()} == {"Plan", "Do", "Review"}
    assert all(r["last output line"].startswith("other agent in t-") for r in rows.values())
