"""worker/mirrors.py against real bare repositories made in the test (file:// paths)."""

from __future__ import annotations

import asyncio
import fcntl
import time
from pathlib import Path
from typing import Any

import pytest

from agentflow.gitspec import repo_key
from agentflow.testing import gitserve
from agentflow.testing.gitserve import seed_git as sh_git
from agentflow.worker.gitrun import Git, GitError, GitResult
from agentflow.worker.mirrors import MirrorError, Mirrors


def make_remote(tmp: Path, files: dict[str, str], name: str = "remote") -> tuple[str, str]:
    """A bare repository with one commit of ``files`` on main; (its path, the commit)."""
    bare, sha = gitserve.make_remote(tmp, files, name)
    return str(bare), sha


def commit_more(tmp: Path, name: str, path: str, text: str, branch: str = "main") -> str:
    work = tmp / f"{name}-seed"
    sh_git("checkout", "--quiet", "-B", branch, cwd=work)
    (work / path).write_text(text)
    sh_git("add", "-A", cwd=work)
    sh_git("commit", "--quiet", "-m", f"edit {path}", cwd=work)
    sh_git("push", "--quiet", str(tmp / f"{name}.git"), branch, cwd=work)
    return sh_git("rev-parse", "HEAD", cwd=work)


@pytest.fixture
def mirrors(tmp_path: Path) -> Mirrors:
    return Mirrors(tmp_path / "ws", Git(), max_bytes=10**9)


async def test_one_mirror_and_one_fetch_serve_concurrent_resolves(
    tmp_path: Path, mirrors: Mirrors
) -> None:
    url, sha = make_remote(tmp_path, {"a.txt": "a\n"})
    got = await asyncio.gather(*(mirrors.resolve(url, "main") for _ in range(4)))
    assert got == [sha] * 4
    assert mirrors.fetches == 1
    assert await mirrors.resolve(url, sha) == sha  # a known sha costs no network
    assert await mirrors.resolve(url + "/", None) == sha  # same mirror for the same repo
    assert mirrors.fetches == 1
    assert [p.name for p in mirrors.root.glob("*.git")] == [f"{repo_key(url)}.git"]


class CountingGit(Git):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def __call__(self, *args: str, **kw: Any) -> GitResult:
        self.calls.append(args[0])
        return await super().__call__(*args, **kw)


async def test_waiters_queued_on_the_fetch_lock_share_one_fetch(tmp_path: Path) -> None:
    git = CountingGit()
    mirrors = Mirrors(tmp_path / "ws", git, max_bytes=10**9)
    url, sha = make_remote(tmp_path, {"a.txt": "a\n"})
    async with mirrors.hold(url):
        pass
    lock = open(mirrors.root / f"{repo_key(url)}.fetch.lock", "ab")  # noqa: SIM115
    fcntl.flock(lock, fcntl.LOCK_EX)
    waiters = [asyncio.create_task(mirrors.ensure(url, sha)) for _ in range(4)]
    deadline = time.monotonic() + 30
    while git.calls.count("cat-file") < 4 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)  # each has looked and found nothing; now they queue
    lock.close()
    await asyncio.gather(*waiters)
    assert mirrors.fetches == 1


async def test_refs_resolve_to_branch_tag_and_non_tip_sha(tmp_path: Path, mirrors: Mirrors) -> None:
    url, first = make_remote(tmp_path, {"a.txt": "a\n"})
    sh_git("tag", "-a", "-m", "v1", "v1", first, cwd=tmp_path / "remote-seed")
    sh_git("push", "--quiet", url, "v1", cwd=tmp_path / "remote-seed")
    feature = commit_more(tmp_path, "remote", "b.txt", "b\n", branch="feature/x")
    second = commit_more(tmp_path, "remote", "a.txt", "a2\n", branch="feature/x")
    assert await mirrors.resolve(url, "v1") == first  # the annotated tag, peeled
    assert await mirrors.resolve(url, "feature/x") == second
    assert await mirrors.resolve(url, "refs/heads/main") == first
    assert await mirrors.resolve(url, feature) == feature  # reachable, not a tip


async def test_unknown_ref_and_unknown_sha_are_errors(tmp_path: Path, mirrors: Mirrors) -> None:
    url, _ = make_remote(tmp_path, {"a.txt": "a\n"})
    with pytest.raises(GitError, match="has no ref nope"):
        await mirrors.resolve(url, "nope")
    with pytest.raises(GitError, match="cannot fetch 0000000000"):
        await mirrors.ensure(url, "0" * 40)


async def test_a_changed_config_is_rebuilt_when_unheld_and_fails_when_held(
    tmp_path: Path, mirrors: Mirrors
) -> None:
    url, sha = make_remote(tmp_path, {"a.txt": "a\n"})
    await mirrors.resolve(url, "main")
    mirror = mirrors.path(url)
    sh_git("--git-dir", str(mirror), "config", "core.hooksPath", "/tmp/evil")
    async with mirrors.hold(url) as held:  # unheld: rebuilt clean
        assert "evil" not in (held / "config").read_text()
        await mirrors.ensure(url, sha)
        sh_git("--git-dir", str(mirror), "config", "core.hooksPath", "/tmp/evil")
        with pytest.raises(MirrorError, match="config changed"):
            async with mirrors.hold(url):
                pass


async def test_lru_eviction_skips_a_held_mirror(tmp_path: Path) -> None:
    now = [1000.0]
    mirrors = Mirrors(tmp_path / "ws", Git(), max_bytes=1, clock=lambda: now[0])
    urls = [make_remote(tmp_path, {"f.txt": n}, name=n)[0] for n in ("old", "mid", "new")]
    for url in urls:
        await mirrors.resolve(url, "main")
        now[0] += 10
    async with mirrors.hold(urls[0]):  # the oldest is in use: it stays
        dropped = await mirrors.evict()
    assert dropped == [repo_key(urls[1]), repo_key(urls[2])]
    assert mirrors.path(urls[0]).is_dir() and not mirrors.path(urls[1]).exists()
    assert await mirrors.evict() == []  # at most once a minute
    now[0] += 61
    assert await mirrors.evict() == [repo_key(urls[0])]
    assert await mirrors.resolve(urls[1], "main")  # an evicted mirror is simply fetched again


async def test_mirror_has_the_sparse_shape_and_a_redacted_url(tmp_path: Path) -> None:
    git = Git()
    mirrors = Mirrors(tmp_path / "ws", git, max_bytes=10**9)
    url, _ = make_remote(tmp_path, {"a.txt": "a\n"})
    await mirrors.resolve(url, "main")
    mirror = mirrors.path(url)
    assert "worktreeConfig = true" in (mirror / "config").read_text()
    assert "bare = true" in (mirror / "config.worktree").read_text()
    meta = (mirrors.root / f"{repo_key(url)}.json").read_text()
    assert '"bytes": ' in meta and url in meta
    assert git.redact("https://tok@h/r") == "https://***@h/r"
