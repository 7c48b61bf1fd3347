"""The workflow CLI's pure parts: telling a workflow file apart, drawing the graph."""

from pathlib import Path

import pytest

from agentflow.cli.workflow import is_workflow, load_workflow_file, render_graph
from agentflow.errors import ConfigError


def test_workflow_files_are_recognised() -> None:
    assert is_workflow({"tasks": [{"id": "a"}, {"id": "b", "dependencies": ["a"]}]})
    assert is_workflow([{"id": "a"}, {"id": "b", "dependencies": ["a"]}])
    assert is_workflow({"failure_policy": "fail_fast", "tasks": []})
    assert not is_workflow({"tasks": [{"command": "true"}]})
    assert not is_workflow([{"command": "true"}])


def test_bad_workflow_file_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "wf.yaml"
    bad.write_text("tasks:\n  - id: a\n    trigger: sometimes\n")
    with pytest.raises(ConfigError, match=r"wf.yaml: tasks.0.trigger"):
        load_workflow_file(bad)
    good = tmp_path / "ok.yaml"
    good.write_text("tasks:\n  - id: a\n  - id: b\n    dependencies: [a]\n")
    assert load_workflow_file(good)["name"] == "ok"


def test_graph_is_drawn_by_level_with_states_and_the_critical_path() -> None:
    graph = {
        "id": "wf-1",
        "name": "diamond",
        "status": "running",
        "nodes": [
            {"key": "a", "status": "completed", "dependencies": []},
            {"key": "b", "status": "running", "dependencies": ["a"]},
            {"key": "c", "status": "queued", "dependencies": ["a"]},
            {"key": "d", "status": "pending", "dependencies": ["b", "c"]},
        ],
        "analysis": {
            "levels": [["a"], ["b", "c"], ["d"]],
            "critical_path": ["a", "b", "d"],
            "critical_path_s": 3.5,
            "max_width": 2,
            "peak_parallelism": 2,
        },
    }
    assert render_graph(graph).splitlines() == [
        "diamond (wf-1): running",
        "level 0",
        "  * a [completed]",
        "level 1",
        "  * b [running]  <- a",
        "    c [queued]  <- a",
        "level 2",
        "  * d [pending]  <- b, c",
        "critical path (*): a -> b -> d (3.50s); widest level 2, peak parallelism 2",
    ]
