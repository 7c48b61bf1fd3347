"""A task's ``workspace`` at the API: each gitspec rule is a 422 naming its field, the format gate
is a 409, and neither commits anything."""

from __future__ import annotations

from typing import Any

import pytest

from agentflow.api.schemas import TaskIn
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
