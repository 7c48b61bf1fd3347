"""testing/gitserve.py, and the fenced push over git:// (design 19 §8)."""

from __future__ import annotations

from pathlib import Path

from agentflow.testing.gitserve import GitDaemon, make_remote, seed_git
from agentflow.worker.gitrun import Git
from agentflow.worker.workspace import Workspaces, WorkspaceSettings


async def test_workspace_attempts_fetch_and_push_through_git_daemon(tmp_path: Path) -> None:
    bare, sha = make_remote(tmp_path, {"a.txt": "a\n"})
    spaces = Workspaces(WorkspaceSettings(worker_id="w1", root=tmp_path / "ws"), Git())
    with GitDaemon(tmp_path) as daemon:
        url = daemon.url(bare.name)
        frame = {"task_id": "t-1", "token": 20, "spec": {"workspace": {"repo": url}}}
        attempt = spaces.attempt(
            frame, argv=["/bin/sh", "-c", "echo b > b.txt"], env={"PATH": "/usr/bin:/bin"},
            on_output=lambda s, d: None, on_base=lambda s: None,
        )  # fmt: skip
        done = await attempt.run()
        assert done.status == "completed" and done.workspace is not None
        assert done.workspace["base"] == sha and done.workspace["pushed"]
        stale = spaces.attempt(
            {**frame, "token": 10}, argv=["/bin/sh", "-c", "echo c > b.txt"],
            env={"PATH": "/usr/bin:/bin"}, on_output=lambda s, d: None, on_base=lambda s: None,
        )  # fmt: skip
        refused = await stale.run()
    assert refused.status == "failed" and "holds token 20" in (refused.reason or "")
    assert (
        seed_git("--git-dir", str(bare), "rev-parse", "agentflow/t-1") == done.workspace["commit"]
    )
