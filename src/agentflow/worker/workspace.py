"""Task attempts that run in a fresh git worktree and leave one fenced commit behind.

:class:`Workspaces` owns the worker's workspace directory (mirrors and worktrees) and makes a
:class:`WorkspaceAttempt` per assigned workspace task. The attempt is an
:class:`~agentflow.worker.executor.Attempt`, so the runtime, backlog and batching keep their
types: it prepares a worktree at the base (the pinned one on a retry), runs the program there,
commits what changed with the AgentFlow trailers, pushes with the fenced rule of design 19 §4,
and always removes the worktree. Its result travels in ``Finished.workspace``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agentflow.config import WorkerConfig, read_token_file
from agentflow.errors import ConfigError
from agentflow.gitspec import (
    GitSpecError,
    WorkspaceResult,
    WorkspaceSpec,
    default_branch,
    parent_ref,
)
from agentflow.worker.executor import Attempt, Finished, OutputSink
from agentflow.worker.gitrun import MIN_GIT, Credentials, Git, GitError
from agentflow.worker.merge import MergeAttempt
from agentflow.worker.mirrors import Mirrors, tree_bytes
from agentflow.worker.outbox import Outbox
from agentflow.worker.worktree import (
    Identity,
    Remote,
    Trailers,
    add_worktree,
    commit_changes,
    diff_files,
    fenced_push,
    prune_worktrees,
    remove_worktree,
)

__all__ = ["WorkspaceAttempt", "WorkspaceSettings", "Workspaces", "from_config"]

STALE_TMP_S = 3600.0
# Git's reach into the worker's credentials: a workspace task never sees them (design 19 §4).
_GIT_SECRETS = ("SSH_AUTH_SOCK", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH_COMMAND")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceSettings:
    """The worker's workspace flags (design 19 §4), as WorkerConfig will carry them."""

    worker_id: str
    root: Path  # --workspace-dir
    cache_max_bytes: int = 50 << 30  # --workspace-cache-max
    quota_bytes: int = 10 << 30  # --workspace-quota, per worktree
    quota_check_s: float = 5.0  # how often a running task's worktree is measured
    git_author: str = "AgentFlow <agentflow@localhost>"  # --git-author; also the committer
    git_timeout_s: float = 600.0  # --git-timeout, for fetch and push


def from_config(config: WorkerConfig) -> tuple[WorkspaceSettings, Credentials]:
    """The worker's workspace flags, checked; ConfigError names the bad flag."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    root = Path(config.workspace_dir or Path(cache) / "agentflow" / "workspaces")
    author = config.git_author or f"AgentFlow <agentflow@{socket.gethostname()}>"
    try:
        Identity.parse(author)
    except ValueError as exc:
        raise ConfigError(f"--git-author: {exc}") from None
    if config.git_token_header not in ("bearer", "basic"):
        raise ConfigError("--git-token-header must be bearer or basic")
    token = read_token_file(config.git_token_file) if config.git_token_file else None
    if token is not None and not _token_url_ok(config.git_token_url):
        raise ConfigError(
            "--git-token-file needs --git-token-url, an https:// prefix (http:// on loopback)"
        )
    settings = WorkspaceSettings(
        worker_id=config.worker_id,
        root=root,
        cache_max_bytes=config.workspace_cache_max,
        quota_bytes=config.workspace_quota,
        git_author=author,
        git_timeout_s=config.git_timeout_s,
    )
    creds = Credentials(
        token=token,
        token_url=config.git_token_url,
        token_header=config.git_token_header,
        helper=config.git_credential_helper,
        ssh_command=config.git_ssh_command,
    )
    return settings, creds


def _token_url_ok(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    if parts.username or parts.password or not parts.hostname:
        return False
    return parts.scheme == "https" or (
        parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
    )


class Workspaces:
    def __init__(self, settings: WorkspaceSettings, git: Git | None = None) -> None:
        self.settings = settings
        self.git = git or Git()
        self.ok = False  # start() found git >= 2.38: this worker takes workspace tasks
        self.mirrors = Mirrors(
            settings.root,
            self.git,
            settings.cache_max_bytes,
            fetch_timeout_s=settings.git_timeout_s,
        )

    @classmethod
    def from_config(cls, config: WorkerConfig) -> Workspaces:
        settings, creds = from_config(config)
        return cls(settings, Git(creds))

    def path_for(self, task_id: str, token: int) -> Path:
        return self.settings.root / "worktrees" / self.settings.worker_id / f"{task_id}-{token}"

    async def start(self) -> bool:
        """Clean up after a dead process with this worker id; False when git is too old."""
        self.ok = False
        if await self.git.version() < MIN_GIT:
            return False
        mine = self.settings.root / "worktrees" / self.settings.worker_id
        await asyncio.to_thread(shutil.rmtree, mine, True)
        now = time.time()
        for mirror in sorted(self.mirrors.root.glob("*.git")):
            await prune_worktrees(self.git, mirror)
        for tmp in self.mirrors.root.glob("*.git.tmp-*"):
            if now - tmp.stat().st_mtime > STALE_TMP_S:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
        self.ok = True
        return True

    def prepare(
        self, frame: Mapping[str, Any], *, argv: list[str], env: Mapping[str, str], outbox: Outbox
    ) -> WorkspaceAttempt | MergeAttempt | str:
        """The attempt an assign frame asks for, or why this worker cannot run it."""
        task_id, token = str(frame["task_id"]), int(frame["token"])
        if not self.ok:
            return "this worker has no git workspaces (git >= 2.38)"
        try:
            if frame["spec"].get("merge"):
                return MergeAttempt(
                    frame,
                    WorkspaceSpec.from_wire(frame["spec"]["workspace"]),
                    mirrors=self.mirrors,
                    git=self.git,
                    identity=Identity.parse(self.settings.git_author),
                    timeout_s=self.settings.git_timeout_s,
                    on_output=lambda stream, data: outbox.output(task_id, token, stream, data),
                    on_base=lambda sha: outbox.based(task_id, token, sha),
                )
            return self.attempt(
                frame,
                argv=argv,
                env=env,
                on_output=lambda stream, data: outbox.output(task_id, token, stream, data),
                on_base=lambda sha: outbox.based(task_id, token, sha),
            )
        except (GitSpecError, KeyError) as exc:
            return f"bad workspace: {exc}"

    def attempt(
        self,
        frame: Mapping[str, Any],
        *,
        argv: list[str],
        env: Mapping[str, str],
        on_output: OutputSink,
        on_base: Callable[[str], None],
    ) -> WorkspaceAttempt:
        spec = frame["spec"]
        return WorkspaceAttempt(
            self,
            frame,
            WorkspaceSpec.from_wire(spec["workspace"]),
            argv=argv,
            env=env,
            on_output=on_output,
            on_base=on_base,
        )


class WorkspaceAttempt(Attempt):
    def __init__(
        self,
        owner: Workspaces,
        frame: Mapping[str, Any],
        ws: WorkspaceSpec,
        *,
        argv: list[str],
        env: Mapping[str, str],
        on_output: OutputSink,
        on_base: Callable[[str], None],
    ) -> None:
        spec = frame["spec"]
        super().__init__(
            task_id=str(frame["task_id"]),
            token=int(frame["token"]),
            argv=argv,
            env=env,
            cwd=None,
            timeout_s=frame.get("timeout_s"),
            on_output=on_output,
        )
        self._owner = owner
        self._frame = frame
        self._ws = ws
        self._subdir = str(spec.get("cwd") or "")
        self._title = str(spec.get("title") or spec.get("name") or f"AgentFlow task {self.task_id}")
        self._on_base = on_base
        self._path = owner.path_for(self.task_id, self.token)
        self._over_quota: str | None = None
        self._body: asyncio.Future[Finished] | None = None
        self._in_git = True  # a cancel now stops git; while the program runs, Attempt does
        for name in [*_GIT_SECRETS, *(k for k in self._env if k.startswith("GIT_CONFIG_"))]:
            self._env.pop(name, None)

    async def run(self) -> Finished:
        if self.cancelled:
            return Finished(status="cancelled", exit_code=None, reason="cancelled")
        self._body = asyncio.ensure_future(self._run_body())
        try:
            return await self._body
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # run() itself was cancelled, not just a git step by cancel()
            return Finished(status="cancelled", exit_code=None, reason="cancelled")

    def cancel(self) -> None:
        """Kill the program, or the git call running before or after it."""
        super().cancel()
        if self._in_git and self._body is not None:
            self._body.cancel()  # Git kills its process group on cancellation

    async def _run_body(self) -> Finished:
        git, mirrors = self._owner.git, self._owner.mirrors
        base: str | None = None
        try:
            async with mirrors.hold(self._ws.repo) as mirror:
                started = time.monotonic()
                base = await self._base()
                self._on_base(base)
                try:
                    await add_worktree(git, mirror, self._path, base, self._ws.sparse)
                    prepare_ms = int((time.monotonic() - started) * 1000)
                    self._say(f"workspace {git.redact(self._ws.repo)}@{base[:12]} ready in "
                              f"{prepare_ms / 1000:.2f}s")  # fmt: skip
                    return await self._run_and_commit(mirror, base, prepare_ms)
                finally:
                    await remove_worktree(git, mirror, self._path)
        except GitError as exc:
            workspace = {"base": base} if base else None
            return Finished(status="failed", exit_code=None, reason=str(exc), workspace=workspace)
        finally:
            await mirrors.evict()

    async def _run_and_commit(self, mirror: Path, base: str, prepare_ms: int) -> Finished:
        self._cwd = str(self._path / self._subdir) if self._subdir else str(self._path)
        self._env.update(AGENTFLOW_WORKSPACE=str(self._path), AGENTFLOW_WORKSPACE_BASE=base)
        watcher = asyncio.create_task(self._watch_quota())
        self._in_git = False
        try:
            finished = await super().run()
        finally:
            self._in_git = True
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        if self._over_quota is not None:
            finished = Finished(status="failed", exit_code=None, reason=self._over_quota)
        result = WorkspaceResult(base=base, prepare_ms=prepare_ms)
        if finished.status != "completed" or not self._ws.commit:
            return dataclasses.replace(finished, workspace=result.to_wire())
        commit = await commit_changes(
            self._owner.git,
            self._path,
            base,
            message=self._ws.message or self._title,
            author=Identity.parse(self._ws.author or self._owner.settings.git_author),
            committer=Identity.parse(self._owner.settings.git_author),
            trailers=Trailers.of(self._frame),
            sparse=self._ws.sparse,
        )
        if commit is None:
            self._say("no changes: nothing committed")
            return dataclasses.replace(finished, workspace=result.to_wire())
        branch = self._ws.branch or default_branch(self.task_id)
        if self._ws.push:
            remote = Remote(
                git=self._owner.git,
                mirror=mirror,
                url=self._ws.repo,
                timeout_s=self._owner.settings.git_timeout_s,
            )
            await fenced_push(remote, commit, branch, Trailers.of(self._frame))
        files, total, ins, dels = await diff_files(self._owner.git, mirror, base, commit)
        pushed = "; pushed" if self._ws.push else ""
        noun = "file" if total == 1 else "files"
        self._say(f"committed {commit[:12]} ({total} {noun}, +{ins} -{dels}) to {branch}{pushed}")
        result = dataclasses.replace(
            result, commit=commit, branch=branch, pushed=self._ws.push, files=files,
            files_total=total, insertions=ins, deletions=dels,
        )  # fmt: skip
        return dataclasses.replace(finished, workspace=result.to_wire())

    async def _watch_quota(self) -> None:
        """Cancel the program once its worktree outgrows the quota (measured every few s)."""
        quota = self._owner.settings.quota_bytes
        while True:
            await asyncio.sleep(self._owner.settings.quota_check_s)
            used = await asyncio.to_thread(tree_bytes, self._path)
            if used > quota:
                self._over_quota = f"workspace used {_size(used)}, over its quota of {_size(quota)}"
                self.cancel()
                return

    async def _base(self) -> str:
        """The pinned base of a retry, else the parent's commit, else the ref resolved now."""
        pinned = self._frame.get("workspace_base")
        mirrors, url = self._owner.mirrors, self._ws.repo
        if pinned:
            await mirrors.ensure(url, str(pinned))
            return str(pinned)
        ref = self._ws.ref
        named = parent_ref(ref) if ref else None
        if named is None:
            return await mirrors.resolve(url, ref)
        key, what = named
        parent = next((p for p in self._frame.get("parents") or () if p.get("key") == key), None)
        result = (parent or {}).get("workspace") or {}
        if not result.get("base"):
            raise GitError(f"parent {key} left no workspace to start from")
        if what == "commit":
            sha = str(result.get("commit") or result["base"])
            await mirrors.ensure(url, sha, result.get("branch"))
            return sha
        if not result.get("branch"):
            raise GitError(f"parent {key} made no commit, so it has no branch")
        return await mirrors.resolve(url, str(result["branch"]))

    def _say(self, line: str) -> None:
        self._on_output("stderr", f"agentflow: {line}\n".encode())


def _size(n: int) -> str:
    """``n`` bytes in the largest unit that keeps it at least 1 (1536 -> "1.5K")."""
    value, unit = float(n), "B"
    for bigger in ("K", "M", "G", "T"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{n}B" if unit == "B" else f"{value:.1f}{unit}"
