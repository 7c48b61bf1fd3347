"""worker/workspace.py: whole attempts in a worktree against a real bare remote."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from agentflow.config import WorkerConfig
from agentflow.errors import ConfigError
from agentflow.worker.gitrun import Git
from agentflow.worker.merge import MergeAttempt
from agentflow.worker.outbox import Outbox
from agentflow.worker.workspace import Workspaces, WorkspaceSettings, from_config
from tests.unit.test_worker_mirrors import commit_more, make_remote, sh_git

BRANCH = "agentflow/t-1"


def _workspaces(tmp: Path) -> Workspaces:
    return Workspaces(
        WorkspaceSettings(worker_id="w1", root=tmp / "ws", git_author="Bot <bot@box>")
    )


def _frame(url: str, token: int = 1, **ws: Any) -> dict[str, Any]:
    return {
        "task_id": "t-1",
        "token": token,
        "attempt": token,
        "spec": {"title": "edit a", "workspace": {"repo": url, **ws}},
        "timeout_s": 60,
    }


async def _run(
    spaces: Workspaces, frame: dict[str, Any], command: str
) -> tuple[Any, list[str], bytes]:
    bases: list[str] = []
    err: list[bytes] = []
    attempt = spaces.attempt(
        frame,
        argv=["/bin/sh", "-c", command],
        env={"PATH": os.environ["PATH"]},
        on_output=lambda stream, data: err.append(data) if stream == "stderr" else None,
        on_base=bases.append,
    )
    return await attempt.run(), bases, b"".join(err)


async def test_an_attempt_commits_pushes_and_removes_its_worktree(tmp_path: Path) -> None:
    url, sha = make_remote(tmp_path, {"a.txt": "a\n"})
    spaces = _workspaces(tmp_path)
    assert await spaces.start()
    cmd = 'test "$AGENTFLOW_WORKSPACE" = "$PWD" && echo more >> a.txt'
    finished, bases, err = await _run(spaces, _frame(url), cmd)
    assert finished.status == "completed", (finished, err)
    assert bases == [sha]
    result = finished.workspace
    assert result["base"] == sha and result["pushed"] and result["branch"] == BRANCH
    assert result["files"] == [["a.txt", 1, 0]]
    assert sh_git("--git-dir", url, "rev-parse", BRANCH) == result["commit"]
    assert b"agentflow: workspace " in err and b"; pushed" in err
    assert not spaces.path_for("t-1", 1).exists()


async def test_no_change_means_no_commit_and_no_branch(tmp_path: Path) -> None:
    url, sha = make_remote(tmp_path, {"a.txt": "a\n"})
    finished, _, _ = await _run(_workspaces(tmp_path), _frame(url), "cat a.txt")
    assert finished.status == "completed"
    assert finished.workspace == {"base": sha, "prepare_ms": finished.workspace["prepare_ms"]}
    assert BRANCH not in sh_git("--git-dir", url, "branch", "--list")


async def test_a_retry_starts_at_the_pinned_base_though_main_moved(tmp_path: Path) -> None:
    url, sha = make_remote(tmp_path, {"a.txt": "a\n"})
    commit_more(tmp_path, "remote", "a.txt", "moved\n")
    frame = {**_frame(url, token=2), "workspace_base": sha}
    finished, bases, _ = await _run(_workspaces(tmp_path), frame, "grep -qx a a.txt")
    assert finished.status == "completed" and bases == [sha]


async def test_a_failed_program_commits_nothing_and_a_stale_push_fails(tmp_path: Path) -> None:
    url, _ = make_remote(tmp_path, {"a.txt": "a\n"})
    spaces = _workspaces(tmp_path)
    failed, _, _ = await _run(spaces, _frame(url), "echo x > a.txt; exit 3")
    assert failed.status == "failed" and "commit" not in failed.workspace
    later, _, _ = await _run(spaces, _frame(url, token=20), "echo 20 > a.txt")
    assert later.workspace["pushed"]
    stale, _, _ = await _run(spaces, _frame(url, token=10), "echo 10 > a.txt")
    assert stale.status == "failed" and "holds token 20 > ours" in (stale.reason or "")
    assert sh_git("--git-dir", url, "rev-parse", BRANCH) == later.workspace["commit"]


async def test_start_removes_worktrees_left_by_a_dead_process(tmp_path: Path) -> None:
    spaces = _workspaces(tmp_path)
    left = spaces.path_for("t-9", 3)
    left.mkdir(parents=True)
    (left / "junk").write_text("x")
    assert await spaces.start()
    assert not left.exists()


async def test_git_secrets_of_the_worker_never_reach_the_task(tmp_path: Path) -> None:
    url, _ = make_remote(tmp_path, {"a.txt": "a\n"})
    spaces = _workspaces(tmp_path)
    out: list[bytes] = []
    env = {
        "PATH": os.environ["PATH"],
        "SSH_AUTH_SOCK": "/tmp/agent.sock",
        "GIT_ASKPASS": "/bin/askpass",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader",
        "KEEP": "yes",
    }
    attempt = spaces.attempt(
        _frame(url), argv=["/bin/sh", "-c", "env"], env=env,
        on_output=lambda s, d: out.append(d) if s == "stdout" else None, on_base=lambda s: None,
    )  # fmt: skip
    assert (await attempt.run()).status == "completed"
    seen = b"".join(out).decode()
    assert "KEEP=yes" in seen and "AGENTFLOW_WORKSPACE_BASE=" in seen
    for name in ("SSH_AUTH_SOCK", "GIT_ASKPASS", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0"):
        assert f"{name}=" not in seen


async def test_a_task_over_its_quota_is_stopped_and_commits_nothing(tmp_path: Path) -> None:
    url, _ = make_remote(tmp_path, {"a.txt": "a\n"})
    spaces = Workspaces(
        WorkspaceSettings(worker_id="w1", root=tmp_path / "ws", quota_bytes=100_000,
                          quota_check_s=0.05)
    )  # fmt: skip
    cmd = "head -c 300000 /dev/zero > big.bin; exec sleep 30"
    finished, _, _ = await _run(spaces, _frame(url), cmd)
    assert finished.status == "failed"
    assert "workspace used" in (finished.reason or "") and "quota of 97.7K" in finished.reason
    assert BRANCH not in sh_git("--git-dir", url, "branch", "--list")


async def test_cancel_stops_a_git_call_that_hangs(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()  # accepts, never answers: ls-remote waits forever
    url = f"git://127.0.0.1:{server.getsockname()[1]}/r.git"
    attempt = _workspaces(tmp_path).attempt(
        _frame(url), argv=["true"], env={}, on_output=lambda s, d: None, on_base=lambda s: None
    )
    runner = asyncio.create_task(attempt.run())
    server.settimeout(20)
    conn, _ = await asyncio.to_thread(server.accept)  # git is connected, and waits
    attempt.cancel()
    finished = await asyncio.wait_for(runner, timeout=10)
    conn.close()
    server.close()
    assert finished.status == "cancelled"


def test_flags_become_settings_and_bad_ones_are_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("tok-1\n")
    good = WorkerConfig(
        worker_id="w1", workspace_dir=str(tmp_path), git_token_file=str(token_file),
        git_token_url="https://git.example/org/", git_author="Bot <bot@x>",
    )  # fmt: skip
    settings, creds = from_config(good)
    assert settings.root == tmp_path and settings.git_author == "Bot <bot@x>"
    assert creds.token == "tok-1" and creds.token_url == "https://git.example/org/"
    for bad, flag in (
        ({"git_token_url": "http://git.example/"}, "--git-token-file"),
        ({"git_token_url": "https://u:p@git.example/"}, "--git-token-file"),
        ({"git_token_url": None}, "--git-token-file"),
        ({"git_author": "no email"}, "--git-author"),
        ({"git_token_header": "digest"}, "--git-token-header"),
    ):
        with pytest.raises(ConfigError, match=flag):
            from_config(dataclasses.replace(good, **bad))
    loopback = dataclasses.replace(good, git_token_url="http://127.0.0.1:8080/")
    assert from_config(loopback)[1].token_url == "http://127.0.0.1:8080/"


async def test_a_worker_without_git_refuses_workspace_and_merge_tasks(tmp_path: Path) -> None:
    spaces = Workspaces(
        WorkspaceSettings(worker_id="w1", root=tmp_path / "ws"), Git(binary="/nonexistent/git")
    )
    assert not await spaces.start() and not spaces.ok
    outbox = Outbox(1.0, lambda: None)
    frame = _frame("/srv/r.git")
    made = spaces.prepare(frame, argv=["true"], env={}, outbox=outbox)
    assert made == "this worker has no git workspaces (git >= 2.38)"
    working = _workspaces(tmp_path)
    assert await working.start() and working.ok
    merge = {**frame, "spec": {**frame["spec"], "merge": ["a"]}}
    assert isinstance(working.prepare(merge, argv=[], env={}, outbox=outbox), MergeAttempt)
    assert not isinstance(working.prepare(frame, argv=["true"], env={}, outbox=outbox), str)
