"""worker/worktree.py: worktree, commit with trailers, fenced push, diff (real git)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agentflow.worker.gitrun import Git, GitError
from agentflow.worker.mirrors import Mirrors
from agentflow.worker.worktree import (
    Identity,
    Remote,
    StaleAttemptError,
    Trailers,
    _push_once,
    add_worktree,
    commit_changes,
    diff_files,
    fenced_push,
    remove_worktree,
)
from tests.unit.test_worker_mirrors import commit_more, make_remote, sh_git

LANES, CYCLES = 6, 4
WORKER = Identity(name="AgentFlow", email="agentflow@box")
ALICE = Identity.parse("Alice Doe <alice@example.com>")


async def _prepared(tmp: Path, sparse: tuple[str, ...] = ()) -> tuple[Git, Path, str, str, Path]:
    git = Git()
    url, sha = make_remote(tmp, {"a.txt": "a\n", "src/m.py": "x = 1\n", "docs/d.md": "d\n"})
    mirrors = Mirrors(tmp / "ws", git, max_bytes=10**9)
    await mirrors.ensure(url, sha)
    path = tmp / "ws" / "worktrees" / "w1" / "t-1-7"
    await add_worktree(git, mirrors.path(url), path, sha, sparse)
    return git, mirrors.path(url), url, sha, path


async def _commit(git: Git, path: Path, base: str, token: int, **kw: object) -> str | None:
    return await commit_changes(
        git, path, base, message="fix the bug", author=ALICE, committer=WORKER,
        trailers=Trailers(task_id="t-1", attempt=token, token=token), **kw,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_no_change_means_no_commit_and_the_worktree_goes(tmp_path: Path) -> None:
    git, mirror, _, sha, path = await _prepared(tmp_path)
    assert (path / "a.txt").read_text() == "a\n"
    assert await _commit(git, path, sha, 7) is None
    await remove_worktree(git, mirror, path)
    assert not path.exists()
    assert "t-1-7" not in sh_git("--git-dir", str(mirror), "worktree", "list")


async def test_commit_squashes_onto_base_with_trailers_and_author(tmp_path: Path) -> None:
    git, mirror, _, sha, path = await _prepared(tmp_path)
    (path / "a.txt").write_text("a\nb\n")
    (path / "new.bin").write_bytes(b"\0\1\2")
    (path / "docs" / "d.md").unlink()
    sh_git("-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "own", cwd=path)
    commit = await _commit(git, path, sha, 7)
    assert commit is not None
    show = "%an <%ae>|%cn <%ce>|%P|%(trailers:key=AgentFlow-Fencing-Token,valueonly)"
    got = sh_git("--git-dir", str(mirror), "log", "-1", f"--format={show}", commit)
    assert got == f"Alice Doe <alice@example.com>|AgentFlow <agentflow@box>|{sha}|7"
    files, total, ins, dels = await diff_files(git, mirror, sha, commit)
    assert [(f.path, f.insertions, f.deletions) for f in files] == [
        ("a.txt", 1, 0), ("docs/d.md", 0, 1), ("new.bin", -1, -1)
    ]  # fmt: skip
    assert (total, ins, dels) == (3, 1, 1)


async def test_sparse_worktree_checks_out_and_commits_only_its_cone(tmp_path: Path) -> None:
    git, mirror, _, sha, path = await _prepared(tmp_path, sparse=("src",))
    assert (path / "src" / "m.py").exists() and not (path / "docs").exists()
    shared = (mirror / "config").read_text()
    assert "worktreeConfig = true" in shared and "bare" not in shared  # left as it was made
    (path / "src" / "m.py").write_text("x = 2\n")
    commit = await _commit(git, path, sha, 1, sparse=("src",))
    assert commit is not None
    files, *_ = await diff_files(git, mirror, sha, commit)
    assert [f.path for f in files] == ["src/m.py"]  # docs/ is not "deleted"


async def _push(git: Git, mirror: Path, url: str, commit: str, token: int) -> None:
    trailers = Trailers(task_id="t-1", attempt=token, token=token)
    remote = Remote(git=git, mirror=mirror, url=url, timeout_s=60)
    await fenced_push(remote, commit, "agentflow/t-1", trailers)


async def _edit_and_commit(git: Git, path: Path, sha: str, token: int) -> str:
    (path / "a.txt").write_text(f"attempt {token}\n")
    commit = await _commit(git, path, sha, token)
    assert commit is not None
    return commit


async def test_a_stale_attempt_push_is_refused_and_a_later_one_overwrites(tmp_path: Path) -> None:
    git, mirror, url, sha, path = await _prepared(tmp_path)
    c20 = await _edit_and_commit(git, path, sha, 20)
    c10 = await _edit_and_commit(git, path, sha, 10)
    await _push(git, mirror, url, c20, 20)
    with pytest.raises(StaleAttemptError, match="holds token 20 > ours"):
        await _push(git, mirror, url, c10, 10)
    assert sh_git("--git-dir", url, "rev-parse", "agentflow/t-1") == c20
    c30 = await _edit_and_commit(git, path, sha, 30)
    await _push(git, mirror, url, c30, 30)  # not a fast-forward, but a later attempt
    assert sh_git("--git-dir", url, "rev-parse", "agentflow/t-1") == c30
    await _push(git, mirror, url, c30, 30)  # already there: nothing to do


async def test_foreign_history_is_never_rewritten(tmp_path: Path) -> None:
    git, mirror, url, sha, path = await _prepared(tmp_path)
    foreign = commit_more(tmp_path, "remote", "z.txt", "z\n", branch="agentflow/t-1")
    commit = await _edit_and_commit(git, path, sha, 5)
    with pytest.raises(GitError, match="not ours"):
        await _push(git, mirror, url, commit, 5)
    assert sh_git("--git-dir", url, "rev-parse", "agentflow/t-1") == foreign
    trailers = Trailers(task_id="t-1", attempt=1, token=1)
    main_commit = await _edit_and_commit(git, path, sha, 6)
    remote = Remote(git=git, mirror=mirror, url=url, timeout_s=60)
    await fenced_push(remote, main_commit, "main", trailers)
    assert sh_git("--git-dir", url, "rev-parse", "main") == main_commit  # a fast-forward


async def test_the_lease_refuses_a_branch_that_moved_since_it_was_read(tmp_path: Path) -> None:
    git, mirror, url, sha, path = await _prepared(tmp_path)
    commit = await _edit_and_commit(git, path, sha, 3)
    ref, remote = "refs/heads/main", Remote(git=git, mirror=mirror, url=url, timeout_s=60)
    assert not await _push_once(remote, commit, ref, "1" * 40)
    assert not await _push_once(remote, commit, ref, "")  # expected: absent
    assert sh_git("--git-dir", url, "rev-parse", "main") == sha
    assert await _push_once(remote, commit, ref, sha)


class _Overlap(Git):
    """Counts how many ``git worktree`` commands ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self.running = self.most = 0

    async def __call__(self, *args: str, **kw: Any) -> Any:
        if args[:1] != ("worktree",):
            return await super().__call__(*args, **kw)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            return await super().__call__(*args, **kw)
        finally:
            self.running -= 1


async def test_concurrent_adds_and_removes_on_one_mirror_take_turns(tmp_path: Path) -> None:
    """git reads every worktree's admin files while it adds or removes one, and writes a new
    one's ``commondir`` in place: a CI run died reading a half-written one. Changes to a
    mirror's worktrees take its lock in turn; the checkouts still overlap."""
    _, mirror, _, sha, first = await _prepared(tmp_path)
    git = _Overlap()
    await remove_worktree(git, mirror, first)

    async def lane(n: int) -> None:
        for i in range(CYCLES):
            path = tmp_path / "ws" / "worktrees" / f"w{n}" / f"t-{n}-{i}"
            await add_worktree(git, mirror, path, sha, ("src",) if n % 2 else ())
            assert (path / "src" / "m.py").read_text() == "x = 1\n"
            assert (path / "docs" / "d.md").exists() == (n % 2 == 0)
            await remove_worktree(git, mirror, path)
            assert not path.exists()

    await asyncio.gather(*(lane(n) for n in range(LANES)))
    assert git.most == 1
    assert sh_git("--git-dir", str(mirror), "worktree", "list").count("\n") == 0
