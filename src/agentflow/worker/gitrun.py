"""Run git for the worker: bounded in time, fenced off from config, credentials kept in its env.

Every call runs ``git`` with hooks, fsmonitor and submodule recursion switched off, only the
transports of design 19 §1 allowed, and parallel checkout. The environment is the worker's less
every ``GIT_*`` variable, with no system or global config and no terminal prompt. A token
travels only in ``GIT_CONFIG_COUNT``/``KEY_i``/``VALUE_i`` (never in argv, never in a file),
scoped to one URL prefix. Each call is its own process group, killed on timeout or cancel.
:meth:`Git.redact` hides the token, its base64 form and any URL userinfo in text that leaves
this module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from agentflow.errors import AgentFlowError

__all__ = ["GIT_TIMEOUT_S", "MIN_GIT", "Credentials", "Git", "GitError", "GitResult"]

GIT_TIMEOUT_S = 60.0  # one local git call; fetch and push get --git-timeout
MIN_GIT = (2, 38)  # merge-tree --write-tree
MAX_OUTPUT_BYTES = 64 * 1024 * 1024  # of one call's stdout; ls-remote of a huge repo fits
KILL_WAIT_S = 5.0

_TRANSPORTS = ("https", "http", "ssh", "git", "file")
_PRELUDE = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "submodule.recurse=false",
    "-c", "protocol.allow=never",
    *(x for p in _TRANSPORTS for x in ("-c", f"protocol.{p}.allow=always")),
    # Parallel checkout, one worker per core: a 10,000-file worktree took 3.0 s at p50 with
    # git's sequential default and 0.45-0.54 s with this (benchmarks/workspaces.py).
    "-c", "checkout.workers=0",
)  # fmt: skip
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


class GitError(AgentFlowError):
    """A git call failed or ran out of time; the message is already redacted."""

    def __init__(self, detail: str, *, rc: int | None = None) -> None:
        super().__init__(detail)
        self.rc = rc


@dataclass(frozen=True, slots=True, kw_only=True)
class GitResult:
    rc: int
    out: str
    err: str  # redacted


@dataclass(frozen=True, slots=True, kw_only=True)
class Credentials:
    """How git authenticates: a token under one URL prefix, or a credential helper."""

    token: str | None = None
    token_url: str | None = None  # https://host/ (or http on loopback); required with token
    token_header: str = "bearer"  # bearer | basic (user x-access-token)
    helper: str | None = None
    ssh_command: str = "ssh -o BatchMode=yes"

    def header(self) -> str | None:
        if self.token is None:
            return None
        if self.token_header == "basic":
            pair = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
            return f"Authorization: Basic {pair}"
        return f"Authorization: Bearer {self.token}"

    def config(self) -> list[tuple[str, str]]:
        """The (key, value) pairs passed through GIT_CONFIG_KEY_i/VALUE_i."""
        pairs: list[tuple[str, str]] = []
        header = self.header()
        if header is not None:
            if not self.token_url:
                raise ValueError("a git token needs the URL prefix it is sent under")
            pairs.append((f"http.{self.token_url}.extraHeader", header))
        if self.helper is not None:
            pairs += [("credential.helper", ""), ("credential.helper", self.helper)]
        return pairs

    def secrets(self) -> list[str]:
        if not self.token:
            return []
        both = [self.token, base64.b64encode(f"x-access-token:{self.token}".encode()).decode()]
        return [s for s in both if s]


class Git:
    """Runs git; ``await git("rev-parse", "HEAD", git_dir=mirror)``."""

    def __init__(self, credentials: Credentials | None = None, *, binary: str = "git") -> None:
        self._creds = credentials or Credentials()
        self._binary = binary
        self._base_env = self._environment()

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update(
            GIT_TERMINAL_PROMPT="0",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL="/dev/null",
            LC_ALL="C",
            GIT_SSH_COMMAND=self._creds.ssh_command,
        )
        pairs = self._creds.config()
        env["GIT_CONFIG_COUNT"] = str(len(pairs))
        for i, (key, value) in enumerate(pairs):
            env[f"GIT_CONFIG_KEY_{i}"] = key
            env[f"GIT_CONFIG_VALUE_{i}"] = value
        return env

    def redact(self, text: str) -> str:
        """``text`` with the token, its base64 header and URL userinfo turned into ``***``."""
        for secret in self._creds.secrets():
            text = text.replace(secret, "***")
        return _USERINFO.sub(lambda m: f"{m['scheme']}***@", text)

    def argv(self, *args: str, git_dir: Path | None = None) -> list[str]:
        head = [self._binary, *_PRELUDE]
        if git_dir is not None:
            head.append(f"--git-dir={git_dir}")
        return [*head, *args]

    async def __call__(
        self,
        *args: str,
        git_dir: Path | None = None,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float = GIT_TIMEOUT_S,
        check: bool = True,
    ) -> GitResult:
        argv = self.argv(*args, git_dir=git_dir)
        full_env = {**self._base_env, **(env or {})}
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise GitError(f"cannot start git: {exc}") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout=timeout_s)
        except TimeoutError:
            await _kill(proc)
            raise GitError(f"git {args[0]} timed out after {timeout_s:g}s") from None
        except BaseException:
            await _kill(proc)
            raise
        result = GitResult(
            rc=proc.returncode if proc.returncode is not None else -1,
            out=out[:MAX_OUTPUT_BYTES].decode("utf-8", "replace"),
            err=self.redact(err.decode("utf-8", "replace")),
        )
        if check and result.rc != 0:
            raise GitError(f"git {args[0]} failed: {_headline(result)}", rc=result.rc)
        return result

    async def version(self) -> tuple[int, int]:
        """git's (major, minor), or (0, 0) when there is no usable git."""
        try:
            res = await self("version", timeout_s=10.0)
        except GitError:
            return (0, 0)
        m = re.search(r"(\d+)\.(\d+)", res.out)
        return (int(m[1]), int(m[2])) if m else (0, 0)


def _headline(result: GitResult) -> str:
    """The line of git's stderr that says what went wrong (its first fatal or error line)."""
    lines = [ln.strip() for ln in result.err.splitlines() if ln.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else f"exit status {result.rc}"


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL the call's whole process group (git spawns ssh, remote-https, pack-objects)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        await asyncio.wait_for(proc.wait(), timeout=KILL_WAIT_S)
