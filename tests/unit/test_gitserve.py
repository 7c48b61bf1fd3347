"""testing/gitserve.py, and the fenced push over git:// (design 19 §8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentflow.gitspec import repo_key
from agentflow.testing.gitserve import GitDaemon, SmartHttp, make_remote, seed_git
from agentflow.worker.gitrun import Credentials, Git, GitError
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


async def test_a_token_authenticates_over_smart_http_and_never_shows(tmp_path: Path) -> None:
    token = "tok-9f8e7d6c5b4a"
    bare, sha = make_remote(tmp_path, {"a.txt": "a\n"})
    with SmartHttp(tmp_path, token) as server:
        url = server.url(bare.name)
        creds = Credentials(token=token, token_url=f"http://127.0.0.1:{server.port}/")
        spaces = Workspaces(WorkspaceSettings(worker_id="w1", root=tmp_path / "ws"), Git(creds))
        out: list[bytes] = []
        frame = {"task_id": "t-1", "token": 3, "spec": {"workspace": {"repo": url}}}
        attempt = spaces.attempt(
            frame, argv=["/bin/sh", "-c", "env; echo b > b.txt"], env={"PATH": "/usr/bin:/bin"},
            on_output=lambda s, d: out.append(d), on_base=lambda s: None,
        )  # fmt: skip
        done = await attempt.run()
        assert done.status == "completed", done
        assert done.workspace is not None and done.workspace["pushed"]
        assert f"Bearer {token}" in server.seen_auth
        no_token = Workspaces(WorkspaceSettings(worker_id="w2", root=tmp_path / "ws2"), Git())
        with pytest.raises(GitError) as refused:
            await no_token.mirrors.resolve(url, "main")
    assert (
        seed_git("--git-dir", str(bare), "rev-parse", "agentflow/t-1") == done.workspace["commit"]
    )
    assert token not in b"".join(out).decode() and token not in str(refused.value)
    assert (
        token
        not in (tmp_path / "ws" / "mirrors").joinpath(f"{repo_key(url)}.git", "config").read_text()
    )
    assert sha == done.workspace["base"]
