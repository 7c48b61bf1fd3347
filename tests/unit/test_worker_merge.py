"""worker/merge.py: parents' commits land on a branch through merge-tree (real git)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentflow.testing.gitserve import make_remote, seed_git
from agentflow.worker.executor import Finished
from agentflow.worker.outbox import Outbox
from agentflow.worker.workspace import Workspaces, WorkspaceSettings


async def _task(spaces: Workspaces, url: str, task_id: str, command: str) -> dict[str, Any]:
    frame = {"task_id": task_id, "token": 1, "spec": {"workspace": {"repo": url}}}
    attempt = spaces.attempt(
        frame, argv=["/bin/sh", "-c", command], env={"PATH": os.environ["PATH"]},
        on_output=lambda s, d: None, on_base=lambda s: None,
    )  # fmt: skip
    done = await attempt.run()
    assert done.status == "completed" and done.workspace is not None
    return done.workspace


async def _merge(spaces: Workspaces, url: str, parents: dict[str, Any]) -> Finished:
    frame = {
        "task_id": "t-m",
        "token": 1,
        "spec": {"merge": list(parents), "workspace": {"repo": url, "branch": "main"}},
        "parents": [{"key": k, "workspace": w} for k, w in parents.items()],
    }
    made = spaces.prepare(frame, argv=[], env={}, outbox=Outbox(1.0, lambda: None))
    assert not isinstance(made, str)
    return await made.run()


async def test_two_branches_merge_onto_main(tmp_path: Path) -> None:
    bare, seed = make_remote(tmp_path, {"a.txt": "a\n", "b.txt": "b\n"})
    url = str(bare)
    spaces = Workspaces(WorkspaceSettings(worker_id="w1", root=tmp_path / "ws"))
    assert await spaces.start()
    api = await _task(spaces, url, "t-api", "echo api >> a.txt")
    ui = await _task(spaces, url, "t-ui", "echo ui >> b.txt")
    none = await _task(spaces, url, "t-none", "true")
    done = await _merge(spaces, url, {"api": api, "ui": ui, "none": none})
    assert done.status == "completed", done
    result = done.workspace or {}
    assert result["merged"] == ["api", "ui"] and result["base"] == seed
    main = seed_git("--git-dir", str(bare), "rev-parse", "main")
    assert main == result["commit"]
    shown = seed_git("--git-dir", str(bare), "show", "main:a.txt") + seed_git(
        "--git-dir", str(bare), "show", "main:b.txt"
    )
    assert shown == "a\napib\nui"


async def test_a_conflict_names_its_files_and_leaves_main_alone(tmp_path: Path) -> None:
    bare, seed = make_remote(tmp_path, {"a.txt": "a\n"})
    url = str(bare)
    spaces = Workspaces(WorkspaceSettings(worker_id="w1", root=tmp_path / "ws"))
    assert await spaces.start()
    one = await _task(spaces, url, "t-1", "echo one > a.txt")
    two = await _task(spaces, url, "t-2", "echo two > a.txt")
    done = await _merge(spaces, url, {"one": one, "two": two})
    assert done.status == "failed"
    assert done.reason == "merge conflict merging two (agentflow/t-2) into main: a.txt"
    assert (done.workspace or {})["conflicts"] == ["a.txt"]
    assert seed_git("--git-dir", str(bare), "rev-parse", "main") == seed
