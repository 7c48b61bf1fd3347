"""The ``merge`` task kind: land the parents' commits on a branch, in git alone, no worktree.

Design 19 §5. Starting at the workspace's ``ref`` (default: the remote's HEAD), each parent
key in order is merged with ``git merge-tree --write-tree`` (git >= 2.38) and ``commit-tree``,
so nothing is checked out. A parent that made no commit is skipped. A conflict fails the task
with its files and pushes nothing; otherwise the result is pushed with the fenced rule, so a
foreign target such as ``main`` only moves forward.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from agentflow.gitspec import WorkspaceResult, WorkspaceSpec, default_branch
from agentflow.worker.executor import Attempt, Finished, OutputSink
from agentflow.worker.gitrun import Git, GitError
from agentflow.worker.mirrors import Mirrors
from agentflow.worker.worktree import Identity, Remote, Trailers, diff_files, fenced_push

__all__ = ["MAX_CONFLICTS", "MergeAttempt"]

MAX_CONFLICTS = 1000


class MergeConflictError(GitError):
    def __init__(self, detail: str, files: list[str]) -> None:
        super().__init__(detail)
        self.files = files


class MergeAttempt(Attempt):
    def __init__(
        self,
        frame: Mapping[str, Any],
        ws: WorkspaceSpec,
        *,
        mirrors: Mirrors,
        git: Git,
        identity: Identity,
        timeout_s: float,
        on_output: OutputSink,
        on_base: Callable[[str], None],
    ) -> None:
        super().__init__(
            task_id=str(frame["task_id"]),
            token=int(frame["token"]),
            argv=[],
            env={},
            cwd=None,
            timeout_s=None,
            on_output=on_output,
        )
        self._frame = frame
        self._ws = ws
        self._keys = [str(k) for k in frame["spec"].get("merge") or ()]
        self._mirrors = mirrors
        self._git = git
        self._identity = identity
        self._git_timeout_s = timeout_s
        self._on_base = on_base
        self._target = ws.branch or default_branch(self.task_id)

    async def run(self) -> Finished:
        if self.cancelled:
            return Finished(status="cancelled", exit_code=None, reason="cancelled")
        base: str | None = None
        try:
            async with self._mirrors.hold(self._ws.repo) as mirror:
                base = await self._mirrors.resolve(self._ws.repo, self._ws.ref)
                self._on_base(base)
                return await self._merge_all(mirror, base)
        except MergeConflictError as exc:
            result = WorkspaceResult(base=base or "", conflicts=tuple(exc.files))
            return Finished(
                status="failed", exit_code=None, reason=str(exc), workspace=result.to_wire()
            )
        except GitError as exc:
            workspace = {"base": base} if base else None
            return Finished(status="failed", exit_code=None, reason=str(exc), workspace=workspace)

    async def _merge_all(self, mirror: Path, base: str) -> Finished:
        head, merged = base, []
        for key in self._keys:
            parent = self._parent(key)
            commit = parent.get("commit")
            if not commit:
                self._say(f"{key} made no commit: skipped")
                continue
            await self._mirrors.ensure(self._ws.repo, str(commit), parent.get("branch"))
            head = await self._merge_one(mirror, head, key, str(commit), parent.get("branch"))
            merged.append(key)
        result = WorkspaceResult(base=base, merged=tuple(merged))
        if head != base:
            if self._ws.push:
                remote = Remote(
                    git=self._git, mirror=mirror, url=self._ws.repo, timeout_s=self._git_timeout_s
                )
                await fenced_push(remote, head, self._target, Trailers.of(self._frame))
            files, total, ins, dels = await diff_files(self._git, mirror, base, head)
            result = WorkspaceResult(
                base=base, commit=head, branch=self._target, pushed=self._ws.push, files=files,
                files_total=total, insertions=ins, deletions=dels, merged=tuple(merged),
            )  # fmt: skip
            self._say(f"merged {', '.join(merged)} into {self._target}: {head[:12]}")
        return Finished(status="completed", exit_code=0, workspace=result.to_wire())

    async def _merge_one(
        self, mirror: Path, head: str, key: str, commit: str, branch: str | None
    ) -> str:
        res = await self._git(
            "merge-tree", "--write-tree", "--name-only", "--no-messages", head, commit,
            git_dir=mirror, check=False,
        )  # fmt: skip
        lines = res.out.splitlines()
        if res.rc == 1:
            files = [ln for ln in lines[1:] if ln][:MAX_CONFLICTS]
            raise MergeConflictError(
                f"merge conflict merging {key} ({branch or commit[:12]}) into {self._target}: "
                + ", ".join(files),
                files,
            )
        if res.rc != 0 or not lines:
            raise GitError(f"git merge-tree failed on {key}: {res.err.strip()[:200]}", rc=res.rc)
        people = {
            "GIT_AUTHOR_NAME": self._identity.name,
            "GIT_AUTHOR_EMAIL": self._identity.email,
            "GIT_COMMITTER_NAME": self._identity.name,
            "GIT_COMMITTER_EMAIL": self._identity.email,
        }
        message = f"Merge {key} ({branch or commit[:12]})"
        made = await self._git(
            "commit-tree", lines[0], "-p", head, "-p", commit, "-m", message,
            "-m", Trailers.of(self._frame).text(), git_dir=mirror, env=people,
        )  # fmt: skip
        return made.out.strip()

    def _parent(self, key: str) -> Mapping[str, Any]:
        for parent in self._frame.get("parents") or ():
            if parent.get("key") == key:
                workspace = parent.get("workspace") or {}
                return workspace if isinstance(workspace, Mapping) else {}
        raise GitError(f"merge key {key} is not a parent of this task")

    def _say(self, line: str) -> None:
        self._on_output("stderr", f"agentflow: {line}\n".encode())
