"""The demo: its file's agents section serves `agentflow run` (a cluster run leaves it out), and
the DAG drawn at the end of a run."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from agentflow.cli.local import agent_templates
from agentflow.cli.runview import draw_dag
from agentflow.cli.workflow import load_workflow_file, read_spec_file
from agentflow.errors import ConfigError

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def test_a_cluster_run_of_the_demo_file_leaves_its_agents_out() -> None:
    spec = load_workflow_file(DEMO)
    assert "agents" not in spec
    assert [t["id"] for t in spec["tasks"]] == ["plan", "api", "ui", "docs", "review"]
    assert {t["agent"] for t in spec["tasks"]} == {"coder"}


def test_the_file_agents_are_relative_to_the_file_and_flags_win() -> None:
    data = read_spec_file(DEMO)
    templates = agent_templates(DEMO, data, ())
    assert "agents" not in data
    assert shlex.split(templates["coder"]) == [
        "python",
        str(DEMO.parent / "standin_agent.py"),
        "{prompt}",
    ]
    flagged = agent_templates(
        DEMO, read_spec_file(DEMO), ("coder=claude -p {prompt}", f"alt={sys.executable} {{prompt}}")
    )
    assert flagged == {"coder": "claude -p {prompt}", "alt": f"{sys.executable} {{prompt}}"}


def test_an_agents_section_that_is_not_a_mapping_of_templates_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="agents maps a name to a template"):
        agent_templates(tmp_path / "x.yaml", {"agents": ["claude -p {prompt}"]}, ())
    with pytest.raises(ConfigError, match=r"agent coder: .* must be a word of its own"):
        agent_templates(tmp_path / "x.yaml", {"agents": {"coder": "run --p={prompt}"}}, ())


def test_the_dag_is_drawn_by_level_with_times_and_the_critical_path() -> None:
    def task(key: str, deps: list[str], start: str, end: str, attempts: int = 1) -> dict[str, Any]:
        return {
            "key": key,
            "dependencies": deps,
            "attempts": attempts,
            "started_at": f"2026-11-28T10:00:{start}+00:00",
            "finished_at": f"2026-11-28T10:00:{end}+00:00",
        }

    view = {
        "elapsed_s": 4.0,
        "tasks": [
            task("plan", [], "00.000", "00.500"),
            task("fast", ["plan"], "00.600", "01.000"),
            task("slow", ["plan"], "00.600", "02.750", attempts=2),
            task("join", ["fast", "slow"], "02.800", "03.000"),
        ],
    }
    graph = {
        "id": "wf-1",
        "name": "fan",
        "status": "completed",
        "analysis": {
            "levels": [["plan"], ["fast", "slow"], ["join"]],
            "critical_path": ["plan", "slow", "join"],
            "critical_path_s": 2.85,
            "max_width": 2,
        },
    }
    assert draw_dag(graph, view).splitlines() == [
        "fan (wf-1): completed in 4.00s",
        "  level 0  * plan    0.50s",
        "  level 1    fast    0.40s  <- plan",
        "           * slow    2.15s  <- plan  (2 attempts)",
        "  level 2  * join    0.20s  <- fast, slow",
        "critical path (*): plan -> slow -> join, 2.85s; widest level 2",
    ]
