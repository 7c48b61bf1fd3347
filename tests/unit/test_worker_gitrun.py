"""worker/gitrun.py: git's environment, credentials only there, redaction, timeouts (real git)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from pathlib import Path

import pytest

from agentflow.worker.gitrun import Credentials, Git, GitError

TOKEN = "s3cr3t-token-value"


def _git(token_header: str = "bearer") -> Git:
    return Git(
        Credentials(token=TOKEN, token_url="https://git.example/", token_header=token_header)
    )


async def test_argv_switches_off_hooks_and_unlisted_transports() -> None:
    argv = Git().argv("status", git_dir=Path("/m.git"))
    text = " ".join(argv)
    for setting in ("core.hooksPath=/dev/null", "protocol.allow=never", "core.fsmonitor=false"):
        assert setting in text
    assert "protocol.ext.allow" not in text and argv[-2:] == ["--git-dir=/m.git", "status"]
    res = await Git()("ls-remote", "ext::sh -c touch% /tmp/pwned", check=False)
    assert res.rc != 0 and "transport 'ext' not allowed" in res.err


async def test_token_travels_only_in_git_config_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GIT_DIR", "/elsewhere")  # the worker's own GIT_* never leaks in
    git = _git()
    assert not any(TOKEN in a for a in git.argv("fetch", "https://git.example/r"))
    res = await git("config", "--get-all", "http.https://git.example/.extraheader")
    assert res.out.strip() == f"Authorization: Bearer {TOKEN}"
    env = (await git("var", "GIT_EDITOR", check=False), os.environ.get("GIT_DIR"))
    assert env[1] == "/elsewhere"
    assert "GIT_DIR" not in git._environment()


async def test_credential_helper_resets_the_list_first() -> None:
    git = Git(Credentials(helper="store --file=/nonexistent"))
    res = await git("config", "--get-all", "credential.helper")
    assert res.out.splitlines() == ["", "store --file=/nonexistent"]


def test_a_token_without_its_url_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="URL prefix"):
        Git(Credentials(token=TOKEN))


def test_redact_hides_token_base64_and_userinfo() -> None:
    git = _git("basic")
    pair = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    text = f"fatal: {TOKEN} Basic {pair} https://user:pw@host/r.git ssh://git@h/r"
    out = git.redact(text)
    assert TOKEN not in out and pair not in out and "user:pw" not in out
    assert "https://***@host/r.git" in out


async def test_failure_message_is_redacted(tmp_path: Path) -> None:
    git = _git()
    with pytest.raises(GitError) as err:
        await git("ls-remote", f"{tmp_path}/missing-{TOKEN}")
    assert TOKEN not in str(err.value) and "***" in str(err.value)


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    # An alias runs a shell child in git's group: the timeout must take both down.
    pidfile = tmp_path / "pid"
    script = f"!sh -c 'echo $$ > {pidfile}; exec sleep 30'"
    start = time.monotonic()
    with pytest.raises(GitError, match="timed out"):
        await Git()("-c", f"alias.hang={script}", "hang", cwd=tmp_path, timeout_s=1.0)
    assert time.monotonic() - start < 10
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


async def test_version_is_parsed() -> None:
    assert await Git().version() >= (2, 0)
    assert await Git(binary="/nonexistent/git").version() == (0, 0)
