"""The git steps of one workspace attempt: add a worktree, commit, fenced push, diff, remove.

Each step is one function over a :class:`~agentflow.worker.gitrun.Git` and paths, so the
attempt (``worker/workspace.py``) only orders them. The commit is built with ``write-tree`` and
``commit-tree`` on a scratch index, so it squashes whatever the task did into one commit on the
base and carries the AgentFlow trailers. The push is fenced (design 19 §4 step 5, §8): the
branch tip's ``AgentFlow-Fencing-Token`` must not be higher than ours, a foreign tip must be an
ancestor, and ``--force-with-lease`` makes the server compare-and-swap the ref.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.gitspec import FileChange
from agentflow.worker.gitrun import Git, GitError
from agentflow.worker.mirrors import worktree_lock

__all__ = [
    "MAX_FILES",
    "MAX_PATHS_CHARS",
    "PUSH_ROUNDS",
    "Identity",
    "Remote",
    "StaleAttemptError",
    "Trailers",
    "add_worktree",
    "commit_changes",
    "diff_files",
    "fenced_push",
    "prune_worktrees",
    "remove_worktree",
]

MAX_FILES = 1000
MAX_PATHS_CHARS = 64 * 1024
PUSH_ROUNDS = 3
_IDENTITY = re.compile(r"(?P<name>[^<>\n]{1,100}) <(?P<email>[^<>\s]{1,200})>")
_MOVED = ("(stale info)", "(failed to update ref)", "(fetch first)")


class StaleAttemptError(GitError):
    """The branch already holds a later attempt of this task (a higher fencing token)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    name: str
    email: str

    @classmethod
    def parse(cls, text: str) -> Identity:
        m = _IDENTITY.fullmatch(text)
        if m is None:
            raise ValueError(f"not an identity of the form 'Name <email>': {text!r}")
        return cls(name=m["name"], email=m["email"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Trailers:
    task_id: str
    attempt: int
    token: int
    workflow: str | None = None

    def text(self) -> str:
        lines = [
            f"AgentFlow-Task: {self.task_id}",
            f"AgentFlow-Attempt: {self.attempt}",
            f"AgentFlow-Fencing-Token: {self.token}",
        ]
        if self.workflow:
            lines.append(f"AgentFlow-Workflow: {self.workflow}")
        return "\n".join(lines)

    @classmethod
    def of(cls, frame: Mapping[str, Any]) -> Trailers:
        """The trailers of the attempt an assign frame starts."""
        token = int(frame["token"])
        return cls(
            task_id=str(frame["task_id"]),
            attempt=int(frame.get("attempt") or token),
            token=token,
            workflow=frame.get("workflow_id"),
        )


async def add_worktree(
    git: Git, mirror: Path, path: Path, sha: str, sparse: Sequence[str] = ()
) -> None:
    """A detached worktree of ``sha`` at ``path``; with ``sparse``, only those directories.

    Only registering the worktree holds the mirror's worktree lock; the checkout, the slow part
    for a big tree, runs outside it, so slots sharing a mirror check out in parallel.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    async with worktree_lock(mirror):
        await git(
            "worktree", "add", "--quiet", "--no-checkout", "--detach", str(path), sha,
            git_dir=mirror,
        )  # fmt: skip
        if sparse:
            await git("sparse-checkout", "set", "--cone", "--", *sparse, cwd=path)
    await git("checkout", "--quiet", "--detach", sha, cwd=path)  # an unborn index: all files


async def remove_worktree(git: Git, mirror: Path, path: Path) -> None:
    """Delete the worktree's files, then drop the mirror's record of it (and of any other gone)."""
    await asyncio.to_thread(shutil.rmtree, path, True)
    async with worktree_lock(mirror):
        if await asyncio.to_thread(path.exists):  # files rmtree could not delete: git's turn
            await git("worktree", "remove", "--force", str(path), git_dir=mirror, check=False)
        await git("worktree", "prune", git_dir=mirror, check=False)


async def prune_worktrees(git: Git, mirror: Path) -> None:
    """Drop the mirror's records of worktrees whose directories are gone."""
    async with worktree_lock(mirror):
        await git("worktree", "prune", git_dir=mirror, check=False)


async def commit_changes(
    git: Git,
    path: Path,
    base: str,
    *,
    message: str,
    author: Identity,
    committer: Identity,
    trailers: Trailers,
    sparse: Sequence[str] = (),
) -> str | None:
    """One commit on ``base`` with the worktree's content, or None when nothing changed."""
    gitdir = Path((await git("rev-parse", "--absolute-git-dir", cwd=path)).out.strip())
    scratch = gitdir / "agentflow-index"
    index = gitdir / "index"
    if index.exists():  # its stat cache makes `add -A` a stat pass, not a re-hash
        shutil.copyfile(index, scratch)
    env = {"GIT_INDEX_FILE": str(scratch)}
    try:
        await git("add", "-A", "--", *(sparse or ["."]), cwd=path, env=env)
        tree = (await git("write-tree", cwd=path, env=env)).out.strip()
    finally:
        scratch.unlink(missing_ok=True)
    base_tree = (await git("rev-parse", f"{base}^{{tree}}", cwd=path)).out.strip()
    if tree == base_tree:
        return None
    people = {
        "GIT_AUTHOR_NAME": author.name,
        "GIT_AUTHOR_EMAIL": author.email,
        "GIT_COMMITTER_NAME": committer.name,
        "GIT_COMMITTER_EMAIL": committer.email,
    }
    res = await git(
        "commit-tree", tree, "-p", base, "-m", message, "-m", trailers.text(), cwd=path, env=people
    )
    return res.out.strip()


@dataclass(frozen=True, slots=True, kw_only=True)
class Remote:
    """Where a push goes: the repository ``url``, through the ``mirror`` holding the commit."""

    git: Git
    mirror: Path
    url: str
    timeout_s: float  # the worker's --git-timeout, for ls-remote, fetch and push


async def fenced_push(remote: Remote, commit: str, branch: str, trailers: Trailers) -> None:
    """Push ``commit`` to ``refs/heads/<branch>`` unless a later attempt or others got there.

    Raises :class:`StaleAttemptError` when the tip holds this task with a higher token, and
    GitError when a foreign tip is not an ancestor or the branch keeps moving.
    """
    git, ref = remote.git, f"refs/heads/{branch}"
    for _ in range(PUSH_ROUNDS):
        listed = await git(
            "ls-remote", remote.url, ref, git_dir=remote.mirror, timeout_s=remote.timeout_s
        )
        tips = (ln.split("\t") for ln in listed.out.splitlines())
        tip = next((t[0] for t in tips if len(t) == 2 and t[1] == ref), None)  # exact name
        if tip == commit:
            return
        if tip is not None:
            await _check_overwrite(remote, tip, commit, branch, trailers)
        if await _push_once(remote, commit, ref, tip or ""):
            return
    raise GitError(f"branch {branch} kept moving: gave up after {PUSH_ROUNDS} pushes")


_TIP_FORMAT = (
    "--format=%(trailers:key=AgentFlow-Task,valueonly)%x00"
    "%(trailers:key=AgentFlow-Fencing-Token,valueonly)"
)


async def _check_overwrite(
    remote: Remote, tip: str, commit: str, branch: str, ours: Trailers
) -> None:
    git, mirror = remote.git, remote.mirror
    has = await git("cat-file", "-e", f"{tip}^{{commit}}", git_dir=mirror, check=False)
    if has.rc != 0:
        async with worktree_lock(mirror, exclusive=False):
            await git(
                "fetch", "--no-tags", "--no-write-fetch-head", remote.url, f"refs/heads/{branch}",
                git_dir=mirror, timeout_s=remote.timeout_s,
            )  # fmt: skip
    shown = (await git("log", "-1", _TIP_FORMAT, tip, git_dir=mirror)).out
    task, _, token = (part.strip() for part in shown.partition("\0"))
    if task == ours.task_id and token.isdigit():
        if int(token) > ours.token:
            raise StaleAttemptError(
                f"stale attempt: branch {branch} holds token {token} > ours ({ours.token})"
            )
        return  # an earlier attempt of this task: ours replaces it
    ancestor = await git("merge-base", "--is-ancestor", tip, commit, git_dir=mirror, check=False)
    if ancestor.rc != 0:
        raise GitError(
            f"branch {branch} holds commits that are not ours ({tip[:12]}); not overwriting them"
        )


async def _push_once(remote: Remote, commit: str, ref: str, expect: str) -> bool:
    """One leased push; False when the branch moved since ``expect`` (try another round)."""
    git = remote.git
    res = await git(
        "push", "--porcelain", "--no-verify", remote.url, f"{commit}:{ref}",
        f"--force-with-lease={ref}:{expect}",
        git_dir=remote.mirror, timeout_s=remote.timeout_s, check=False,
    )  # fmt: skip
    if res.rc == 0:
        return True
    status = [ln for ln in res.out.splitlines() if ln.startswith("!") and ref in ln]
    if status and any(reason in status[0] for reason in _MOVED):
        return False
    detail = status[0] if status else (res.err.strip().splitlines() or ["no output"])[-1]
    raise GitError(f"push to {ref} failed: {git.redact(detail)}", rc=res.rc)


async def diff_files(
    git: Git, mirror: Path, base: str, commit: str
) -> tuple[tuple[FileChange, ...], int, int, int]:
    """(the first files within the limits, how many files, insertions, deletions)."""
    res = await git("diff", "--numstat", "-z", "--no-renames", base, commit, git_dir=mirror)
    files: list[FileChange] = []
    total = ins = dels = chars = 0
    for record in res.out.split("\0"):
        if not record:
            continue
        added, removed, path = record.split("\t", 2)
        binary = added == "-"
        change = FileChange(
            path=path,
            insertions=-1 if binary else int(added),
            deletions=-1 if binary else int(removed),
        )
        total += 1
        ins += max(change.insertions, 0)
        dels += max(change.deletions, 0)
        chars += len(path)
        if len(files) < MAX_FILES and chars <= MAX_PATHS_CHARS:
            files.append(change)
    return tuple(files), total, ins, dels
