"""``agentflow submit --workspace REPO[@REF]``: the split, the companions, and one usage line for
each bad value before any request is sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from agentflow.cli.workspace import split_repo_ref, workspace_body, workspace_rows
from agentflow.client import TaskInfo
from agentflow.client._core import build_task
from agentflow.gitspec import WorkspaceResult


@pytest.mark.parametrize(
    ("text", "repo", "ref"),
    [
        ("https://h/o/r.git", "https://h/o/r.git", None),
        ("https://h/o/r.git@v1.2", "https://h/o/r.git", "v1.2"),
        ("https://h/o/r.git@feature/x", "https://h/o/r.git", "feature/x"),
        ("git@h:o/r.git", "git@h:o/r.git", None),
        ("git@h:o/r.git@feature/x", "git@h:o/r.git", "feature/x"),
        ("git@h:o/r.git@h2:x", "git@h:o/r.git@h2:x", None),  # a ':' after the '@': no ref
        ("ssh://git@h/r", "ssh://git@h/r", None),
        ("ssh://git@h/r@main", "ssh://git@h/r", "main"),
        ("/srv/r.git@", "/srv/r.git", None),
        ("/srv/r.git@" + "a" * 40, "/srv/r.git", "a" * 40),
        ("https://TOKEN@h/r", "https://TOKEN@h/r", None),  # refused whole, as a credential
    ],
)
def test_repo_ref_split_at_the_last_at(text: str, repo: str, ref: str | None) -> None:
    assert split_repo_ref(text) == (repo, ref)


def test_a_dot_path_names_the_repository_here() -> None:
    assert split_repo_ref("./r.git@dev") == (os.path.abspath("r.git"), "dev")
    assert split_repo_ref("../r.git") == (os.path.abspath("../r.git"), None)


def _body(**given: Any) -> dict[str, Any] | None:
    options: dict[str, Any] = {
        "workspace": None,
        "branch": None,
        "sparse": (),
        "no_commit": False,
        "no_push": False,
        "commit_message": None,
        "author": None,
    }
    return workspace_body(**(options | given))


def test_workspace_body_leaves_defaults_out() -> None:
    assert _body() is None
    assert _body(workspace="/srv/r.git") == {"repo": "/srv/r.git"}
    assert _body(
        workspace="git@h:o/r.git@main",
        branch="fix/1",
        sparse=("src/",),
        no_push=True,
        commit_message="Fix it",
        author="Ada <a@b>",
    ) == {
        "repo": "git@h:o/r.git",
        "ref": "main",
        "branch": "fix/1",
        "push": False,
        "sparse": ["src"],
        "message": "Fix it",
        "author": "Ada <a@b>",
    }
    assert _body(workspace="/r", no_commit=True) == {"repo": "/r", "commit": False, "push": False}


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ({"branch": "x"}, "--branch needs --workspace"),
        ({"sparse": ("a",), "no_push": True}, "--sparse, --no-push needs --workspace"),
        ({"workspace": "ext::sh"}, "transport"),
        ({"workspace": "relative/r.git"}, "absolute path"),
        ({"workspace": "https://TOKEN@h/r"}, "credentials"),
        ({"workspace": "/r@-x"}, "ref must not start with '-'"),
        ({"workspace": "/r", "branch": "HEAD"}, "branch"),
        ({"workspace": "/r", "sparse": ("../x",)}, "sparse path"),
        ({"workspace": "/r", "author": "nobody"}, "author"),
        ({"workspace": "/r", "commit_message": "AgentFlow-Task: x"}, "message"),
    ],
)
def test_bad_workspace_options_are_usage_errors(given: dict[str, Any], says: str) -> None:
    with pytest.raises(click.UsageError, match=says):
        _body(**given)


def test_the_cli_answers_one_line_and_sends_nothing() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentflow", "submit", "--workspace", "ext::sh", "--", "true"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=os.environ | {"AGENTFLOW_MASTER_URL": "http://127.0.0.1:9"},  # nothing listens
    )
    assert done.returncode == 2, done
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("error: --workspace: repo must not name a <transport>:: address")


def test_the_sdk_carries_the_workspace_both_ways() -> None:
    body = build_task("make fix", workspace={"repo": "/srv/r.git", "ref": "main"})
    assert body["workspace"] == {"repo": "/srv/r.git", "ref": "main"}
    assert "workspace" not in build_task("make fix", workspace=None)
    sha = "c" * 40
    view = {"id": "t-1", "status": "completed", "workspace_result": {"base": sha}}
    assert TaskInfo.from_json(view).workspace_result == WorkspaceResult(base=sha)
    assert TaskInfo.from_json({"id": "t-2", "status": "queued"}).workspace_result is None


def test_status_rows_say_where_it_started_and_what_it_made() -> None:
    sha, new = "a" * 40, "b" * 40
    assert workspace_rows({"id": "t-1"}) == []
    view: dict[str, Any] = {"id": "t-1", "workspace": {"repo": "/srv/r.git", "ref": "main"}}
    assert workspace_rows(view) == [["workspace", "/srv/r.git@main -> agentflow/t-1"]]
    view["workspace_result"] = {
        "base": sha,
        "commit": new,
        "files_total": 3,
        "insertions": 10,
        "deletions": 2,
    }
    assert workspace_rows(view)[1:] == [
        ["base", sha],
        ["commit", new],
        ["changes", "3 files, +10 -2"],
    ]
    view["workspace_result"] = {"base": sha, "conflicts": ["a.txt", "x/y.py"]}
    assert workspace_rows(view)[3:] == [["changes", "none"], ["conflicts", "a.txt, x/y.py"]]


def test_a_workflow_file_repo_path_is_resolved_against_the_file(tmp_path: Path) -> None:
    from agentflow.cli.workflow import load_workflow_file

    flow = tmp_path / "flows" / "fan.json"
    flow.parent.mkdir()
    flow.write_text(
        json.dumps(
            {
                "defaults": {"workspace": {"repo": "./fan.git"}},
                "tasks": [
                    {"id": "a", "command": "x"},
                    {"id": "b", "command": "y", "workspace": {"repo": "../up.git"}},
                ],
            }
        )
    )
    data = load_workflow_file(flow)
    assert data["defaults"]["workspace"]["repo"] == str(tmp_path / "flows" / "fan.git")
    assert data["tasks"][1]["workspace"]["repo"] == str(tmp_path / "up.git")


def test_the_fanout_example_makes_its_repository_and_loads(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "examples"
    repo = tmp_path / "fanout-repo.git"
    subprocess.run(["sh", str(examples / "fanout_repo.sh"), str(repo)], check=True, timeout=60)
    log = subprocess.run(
        ["git", "--git-dir", str(repo), "log", "--format=%s", "main"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert log.stdout == "Seed the fan-out example\n"
    from agentflow.api.schemas import WorkflowIn
    from agentflow.cli.workflow import load_workflow_file

    data = load_workflow_file(examples / "fanout.yaml")
    assert data["defaults"]["workspace"]["repo"] == str(examples / "fanout-repo.git")
    flow = WorkflowIn.model_validate(data)
    merge = flow.tasks[-1].with_defaults(flow.defaults).to_new_task("t-m")
    assert merge.title == "merge api, ui, docs"
    assert merge.spec["workspace"]["branch"] == "agentflow/fanout-merged"
