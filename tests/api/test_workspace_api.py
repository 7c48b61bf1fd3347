"""A task's ``workspace`` at the API: each gitspec rule is a 422 naming its field, the format gate
is a 409, and neither commits anything."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.api.schemas import TaskIn, WorkflowIn
from agentflow.state.envelope import WORKSPACE_FORMAT
from tests.api.conftest import Master, problem

TASK: dict[str, Any] = {"title": "edit", "command": "make fix"}
REPO = "https://git.example.org/team/app.git"


@pytest.mark.parametrize(
    ("workspace", "extra", "named"),
    [
        ({"repo": "ext::sh -c touch%20/tmp/pwned"}, {}, "repo"),
        ({"repo": "-uhelp"}, {}, "repo"),
        ({"repo": "https://TOKEN@git.example.org/r.git"}, {}, "credentials"),
        ({"repo": "relative/dir"}, {}, "repo"),
        ({"repo": "ftp://h/r"}, {}, "scheme"),
        ({"repo": REPO, "ref": "--orphan"}, {}, "ref"),
        ({"repo": REPO, "ref": "a..b"}, {}, "ref"),
        ({"repo": REPO, "ref": "${parents.fix.commit}"}, {}, "workflow parent"),
        ({"repo": REPO, "branch": "HEAD"}, {}, "branch"),
        ({"repo": REPO, "branch": "refs/heads/main"}, {}, "branch"),
        ({"repo": REPO, "sparse": ["../etc"]}, {}, "sparse path"),
        ({"repo": REPO, "sparse": ["src/*"]}, {}, "sparse path"),
        ({"repo": REPO, "message": "ok\n\nAgentFlow-Fencing-Token: 9"}, {}, "message"),
        ({"repo": REPO, "author": "no address"}, {}, "author"),
        ({"repo": REPO, "commit": False}, {}, "push needs commit"),
        ({"repo": REPO, "commit": "no", "push": False}, {}, "commit"),
        ({"repo": REPO, "depth": 1}, {}, "depth"),
        ({"ref": "main"}, {}, "needs a repo"),
        ({"repo": REPO}, {"cwd": "/abs/dir"}, "cwd"),
        ({"repo": REPO}, {"cwd": "../up"}, "cwd"),
        ({"repo": REPO}, {"command": None, "function": "m:f"}, "function/pickled"),
    ],
)
async def test_bad_workspace_is_a_422_naming_it_and_commits_nothing(
    master: Master, workspace: dict[str, Any], extra: dict[str, Any], named: str
) -> None:
    before = len(master.log.entries)
    body = {k: v for k, v in (TASK | extra | {"workspace": workspace}).items() if v is not None}
    answer = problem(await master.client.post("/api/v1/tasks", json=body), 422)
    assert named in str(answer), answer
    assert len(master.log.entries) == before


async def test_workspace_tasks_wait_for_the_format_that_knows_them(master: Master) -> None:
    master.log.written_format = WORKSPACE_FORMAT - 1  # a cluster mid-upgrade
    before = len(master.log.entries)
    body = TASK | {"workspace": {"repo": REPO}}
    answer = problem(await master.client.post("/api/v1/tasks", json=body), 409, "conflict")
    assert "finish the upgrade to use workspaces" in answer["detail"]
    batch = {"tasks": [TASK, body]}
    problem(await master.client.post("/api/v1/tasks/batch", json=batch), 409, "conflict")
    flow = {"tasks": [{"id": "a"} | body]}
    problem(await master.client.post("/api/v1/workflows", json=flow), 409, "conflict")
    assert len(master.log.entries) == before


def test_a_good_workspace_travels_in_the_spec_with_defaults_left_out() -> None:
    task = TaskIn.model_validate(
        TASK
        | {
            "cwd": "src/api",
            "workspace": {
                "repo": "git@git.example.org:team/app.git",
                "ref": "release/2.0",
                "push": True,
                "sparse": ["src/", "docs"],
                "author": "Ada <ada@example.org>",
            },
        }
    )
    spec = task.to_new_task("t-1").spec
    assert spec["workspace"] == {
        "repo": "git@git.example.org:team/app.git",
        "ref": "release/2.0",
        "sparse": ["src", "docs"],
        "author": "Ada <ada@example.org>",
    }
    assert "workspace" not in TaskIn.model_validate(TASK).to_new_task("t-2").spec


def _flow(*tasks: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"tasks": list(tasks)} | ({"defaults": defaults} if defaults else {})


@pytest.mark.parametrize(
    ("flow", "says"),
    [
        (_flow({"id": "a", "command": "x", "workspace": {"ref": "main"}}), "needs a repo"),
        (
            _flow(
                {"id": "a", "command": "x"},
                {"id": "b", "command": "y", "workspace": {"ref": "${parents.a.commit}"}},
                defaults={"workspace": {"repo": REPO}},
            ),
            "not one of its dependencies",
        ),
        (
            _flow(
                {"id": "a", "command": "x", "cwd": "/tmp"},
                defaults={"workspace": {"repo": REPO}},
            ),
            "cwd is relative to the worktree",
        ),
        (
            _flow(
                {"id": "a", "command": "x", "workspace": {"push": True}},
                defaults={"workspace": {"repo": REPO, "commit": False, "push": False}},
            ),
            "push needs commit",
        ),
        (_flow({"id": "a", "command": "x"}, defaults={"workspace": {"repo": "ext::x"}}), "repo"),
    ],
)
async def test_bad_workflow_workspace_is_a_422(
    master: Master, flow: dict[str, Any], says: str
) -> None:
    before = len(master.log.entries)
    answer = problem(await master.client.post("/api/v1/workflows/validate", json=flow), 422)
    assert says in str(answer), answer
    problem(await master.client.post("/api/v1/workflows", json=flow), 422)
    assert len(master.log.entries) == before


async def test_workflow_defaults_merge_into_each_program_task(master: Master) -> None:
    flow = _flow(
        {"id": "fix", "command": "x", "workspace": {"branch": "fix"}},
        {
            "id": "check",
            "command": "y",
            "dependencies": ["fix"],
            "workspace": {"ref": "${parents.fix.commit}", "push": False},
        },
        {"id": "join", "dependencies": ["check"]},
        defaults={"workspace": {"repo": REPO, "ref": "main"}},
    )
    ok = await master.client.post("/api/v1/workflows/validate", json=flow)
    assert ok.status_code == 200, ok.text
    body = WorkflowIn.model_validate(flow)
    specs = {t.id: t.with_defaults(body.defaults).to_new_task().spec for t in body.tasks}
    assert specs["fix"]["workspace"] == {"repo": REPO, "ref": "main", "branch": "fix"}
    assert specs["check"]["workspace"] == {
        "repo": REPO,
        "ref": "${parents.fix.commit}",
        "push": False,
    }
    assert "workspace" not in specs["join"]  # a join point runs nothing: no worktree


def _fanout(merge_task: dict[str, Any], **parent: Any) -> dict[str, Any]:
    return _flow(
        {"id": "api", "command": "x"},
        {"id": "ui", "command": "y"} | parent,
        {"id": "m", "dependencies": ["api", "ui"]} | merge_task,
        defaults={"workspace": {"repo": REPO}},
    )


@pytest.mark.parametrize(
    ("flow", "says"),
    [
        (_fanout({"merge": ["api", "docs"]}), "'docs', which is not one of its dependencies"),
        (_fanout({"merge": ["api", "ui"]}, workspace={"push": False}), "pushes no workspace"),
        (_fanout({"merge": ["api", "ui"]}, workspace={"repo": "/other.git"}), "whose repo is not"),
        (_fanout({"merge": ["api"], "command": "make"}), "merge is the whole task: drop command"),
        (_fanout({"merge": []}), "at least 1"),
        (
            _flow({"id": "a", "command": "x"}, {"id": "m", "dependencies": ["a"], "merge": ["a"]}),
            "merge needs a workspace",
        ),
    ],
)
async def test_bad_merge_is_a_422(master: Master, flow: dict[str, Any], says: str) -> None:
    answer = problem(await master.client.post("/api/v1/workflows/validate", json=flow), 422)
    assert says in str(answer), answer


def test_a_merge_step_travels_as_spec_merge_and_is_titled_by_its_keys() -> None:
    flow = _fanout({"merge": ["api", "ui"], "workspace": {"branch": "agentflow/fanout"}})
    body = WorkflowIn.model_validate(flow)
    merge = next(t for t in body.tasks if t.id == "m").with_defaults(body.defaults)
    assert not merge.runs_nothing
    new = merge.to_new_task("t-m")
    assert new.title == "merge api, ui"
    assert new.spec["merge"] == ["api", "ui"] and "command" not in new.spec
    assert new.spec["workspace"] == {"repo": REPO, "branch": "agentflow/fanout"}
