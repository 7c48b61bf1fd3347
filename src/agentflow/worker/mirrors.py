"""Bare mirrors of task repositories, one per URL, shared by every slot of this machine.

Layout under ``root`` (design 19 §4)::

    mirrors/<repo_key>.git        bare, shaped as sparse checkout leaves it (§8)
    mirrors/<repo_key>.lock       shared flock while in use, exclusive to evict or rebuild
    mirrors/<repo_key>.fetch.lock exclusive to create or fetch: one fetch serves all waiters
    mirrors/<repo_key>.worktrees.lock exclusive to add, remove or prune a worktree; shared
                                  while git lists the worktrees for another reason (fetch)
    mirrors/<repo_key>.json       {url (redacted), used_ms, bytes, config_sha}, tmp + rename

Locks are ``flock`` taken with LOCK_NB and polled, so the event loop never blocks; flock is per
open file, so it also separates slots and the in-process workers of ``agentflow run``. A mirror
is never pruned (unpushed commits are loose), and one in use is never evicted.

The worktree lock exists because git writes a new worktree's admin files
(``worktrees/<id>/commondir``) in place, not by rename, and every git command that lists the
worktrees reads them all: one that read a half-written file died with "failed to read
.../commondir" (a CI run of benchmarks/workspaces.py, four workers adding at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

from agentflow.gitspec import repo_key
from agentflow.worker.gitrun import Git, GitError

__all__ = [
    "EVICT_EVERY_S",
    "LOCK_WAIT_S",
    "MirrorError",
    "Mirrors",
    "tree_bytes",
    "worktree_lock",
]

LOCK_WAIT_S = 900.0  # a fetch of a big repository may hold the fetch lock this long
LOCK_POLL_MIN_S = 0.01
LOCK_POLL_MAX_S = 0.1
EVICT_EVERY_S = 60.0
REPACK_PAST_PACKS = 50
FETCH_TIMEOUT_S = 600.0  # the worker's --git-timeout replaces it
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SHAPE = (  # what `sparse-checkout` in a worktree would otherwise rewrite once (§8)
    ("extensions.worktreeConfig", "true", False),
    ("core.bare", "true", True),
    ("gc.auto", "0", False),
    ("core.logAllRefUpdates", "false", False),
)


class MirrorError(GitError):
    """A mirror cannot be used: its lock timed out, or a task changed its config while held."""


class Mirrors:
    """The mirrors under ``root``; ``max_bytes`` bounds all of them together (LRU)."""

    def __init__(
        self,
        root: Path,
        git: Git,
        max_bytes: int,
        *,
        fetch_timeout_s: float = FETCH_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = Path(root) / "mirrors"
        self._git = git
        self._max_bytes = max_bytes
        self._fetch_timeout_s = fetch_timeout_s
        self._clock = clock
        self._last_evict = -EVICT_EVERY_S
        self.fetches = 0  # network fetches made by this process (tests and metrics)

    def path(self, url: str) -> Path:
        return self.root / f"{repo_key(url)}.git"

    # -- resolving and fetching -------------------------------------------------------------

    async def resolve(self, url: str, ref: str | None) -> str:
        """The commit ``ref`` names (None: the remote's HEAD), fetched into the mirror."""
        if ref is not None and _SHA.fullmatch(ref):
            await self.ensure(url, ref)  # no network when the mirror has it
            return ref
        mirror = await self._created(url)
        wanted = ["HEAD"] if ref is None else [ref, f"refs/heads/{ref}", f"refs/tags/{ref}"]
        res = await self._git(
            "ls-remote", "--symref", url, *dict.fromkeys(["HEAD", *wanted]),
            git_dir=mirror, timeout_s=self._fetch_timeout_s,
        )  # fmt: skip
        sha, branch = _pick(res.out, wanted)
        if sha is None:
            raise GitError(f"{self._git.redact(url)} has no ref {ref or 'HEAD'}")
        await self.ensure(url, sha, branch)
        # ls-remote with patterns lists no peeled tags: an annotated tag is peeled here.
        peeled = await self._git("rev-parse", "--verify", f"{sha}^{{commit}}", git_dir=mirror)
        return peeled.out.strip()

    async def ensure(self, url: str, sha: str, branch: str | None = None) -> Path:
        """The mirror of ``url``, holding ``sha``; fetched under the fetch lock if missing."""
        mirror = await self._created(url)
        if await self._has(mirror, sha):
            return mirror
        async with _flock(self._lockfile(url, "fetch.lock"), fcntl.LOCK_EX):
            if not await self._has(mirror, sha):  # another waiter may have fetched it
                await self._fetch(url, mirror, sha, branch)
            await self._write_meta(url, mirror, with_bytes=True)
        return mirror

    async def _fetch(self, url: str, mirror: Path, sha: str, branch: str | None) -> None:
        attempts = [[sha]]
        if branch:
            attempts.append([f"+refs/heads/{branch}:refs/heads/{branch}"])
        attempts.append(["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"])
        last: GitError | None = None
        for refspecs in attempts:
            self.fetches += 1
            try:
                async with worktree_lock(mirror, exclusive=False):
                    await self._git(
                        "fetch", "--no-tags", "--no-write-fetch-head", url, *refspecs,
                        git_dir=mirror, timeout_s=self._fetch_timeout_s,
                    )  # fmt: skip
            except GitError as exc:
                last = exc
                continue
            if await self._has(mirror, sha):
                await self._maybe_repack(mirror)
                return
        reason = f": {last}" if last else ""
        raise GitError(f"cannot fetch {sha[:12]} from {self._git.redact(url)}{reason}")

    async def _has(self, mirror: Path, sha: str) -> bool:
        res = await self._git("cat-file", "-e", f"{sha}^{{commit}}", git_dir=mirror, check=False)
        return res.rc == 0

    async def _maybe_repack(self, mirror: Path) -> None:
        packs = list((mirror / "objects" / "pack").glob("*.pack"))
        if len(packs) > REPACK_PAST_PACKS:
            async with worktree_lock(mirror, exclusive=False):  # --all reads worktree HEADs
                await self._git("repack", "-d", "--geometric=2", git_dir=mirror, timeout_s=600.0)

    # -- creating and checking --------------------------------------------------------------

    async def _created(self, url: str) -> Path:
        mirror = self.path(url)
        if mirror.is_dir():
            return mirror
        self.root.mkdir(parents=True, exist_ok=True)
        async with _flock(self._lockfile(url, "fetch.lock"), fcntl.LOCK_EX):
            if not mirror.is_dir():
                await self._create(url, mirror)
        return mirror

    async def _create(self, url: str, mirror: Path) -> None:
        tmp = mirror.with_name(f"{mirror.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
        try:
            await self._git("init", "--quiet", "--bare", str(tmp))
            for key, value, per_worktree in _SHAPE:
                scope = ["--worktree"] if per_worktree else []
                await self._git("config", *scope, key, value, git_dir=tmp)
            # init --bare wrote core.bare to the shared config, where worktrees would read it.
            await self._git("config", "--local", "--unset", "core.bare", git_dir=tmp)
            meta = {"url": self._git.redact(url), "used_ms": self._now_ms(), "bytes": 0}
            meta["config_sha"] = _config_sha(tmp)
            _write_json(tmp.with_name(f"{mirror.name[: -len('.git')]}.json"), meta)
            tmp.rename(mirror)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _lockfile(self, url: str, kind: str) -> Path:
        return self.root / f"{repo_key(url)}.{kind}"

    def _meta_path(self, url: str) -> Path:
        return self.root / f"{repo_key(url)}.json"

    async def _write_meta(self, url: str, mirror: Path, *, with_bytes: bool = False) -> None:
        meta = _read_json(self._meta_path(url))
        meta["url"] = self._git.redact(url)
        meta["used_ms"] = self._now_ms()
        if with_bytes:
            meta["bytes"] = await asyncio.to_thread(tree_bytes, mirror)
        _write_json(self._meta_path(url), meta)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- holding ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def hold(self, url: str) -> AsyncIterator[Path]:
        """The mirror of ``url``, kept from eviction while the block runs.

        Its config is checked against the hash recorded at creation: a mirror a task changed
        is rebuilt when no one else holds it, else the attempt fails.
        """
        mirror = await self._created(url)
        lock = self._lockfile(url, "lock")
        if _config_sha(mirror) != _read_json(self._meta_path(url)).get("config_sha"):
            await self._rebuild(url, mirror, lock)
        async with _flock(lock, fcntl.LOCK_SH):
            if not mirror.is_dir():  # evicted between the check and the lock
                await self._created(url)
            await self._write_meta(url, mirror)
            yield mirror

    async def _rebuild(self, url: str, mirror: Path, lock: Path) -> None:
        handle = _try_flock(lock, fcntl.LOCK_EX)
        if handle is None:
            raise MirrorError(f"the mirror of {self._git.redact(url)} had its config changed")
        try:
            async with _flock(self._lockfile(url, "fetch.lock"), fcntl.LOCK_EX):
                shutil.rmtree(mirror, ignore_errors=True)
                await self._create(url, mirror)
        finally:
            handle.close()

    # -- eviction ---------------------------------------------------------------------------

    async def evict(self, *, force: bool = False) -> list[str]:
        """Drop least recently used mirrors no one holds until all fit; their repo keys.

        Runs at most once a minute unless ``force``.
        """
        now = self._clock()
        if not force and now - self._last_evict < EVICT_EVERY_S:
            return []
        self._last_evict = now
        metas = sorted(
            ((_read_json(p), p.name[: -len(".json")]) for p in self.root.glob("*.json")),
            key=lambda mk: int(mk[0].get("used_ms", 0)),
        )
        total = sum(int(m.get("bytes", 0)) for m, _ in metas)
        dropped: list[str] = []
        for meta, key in metas:
            if total <= self._max_bytes:
                break
            if self._drop(key):
                total -= int(meta.get("bytes", 0))
                dropped.append(key)
        return dropped

    def _drop(self, key: str) -> bool:
        handle = _try_flock(self.root / f"{key}.lock", fcntl.LOCK_EX)
        if handle is None:
            return False  # held: in use by an attempt
        try:
            fetch = _try_flock(self.root / f"{key}.fetch.lock", fcntl.LOCK_EX)
            if fetch is None:
                return False
            try:
                shutil.rmtree(self.root / f"{key}.git", ignore_errors=True)
                (self.root / f"{key}.json").unlink(missing_ok=True)
            finally:
                fetch.close()
        finally:
            handle.close()
        return True


def _pick(ls_remote: str, wanted: list[str]) -> tuple[str | None, str | None]:
    """The sha of the first of ``wanted`` that ls-remote lists (a tag peeled), and its branch."""
    refs: dict[str, str] = {}
    symref: dict[str, str] = {}
    for line in ls_remote.splitlines():
        left, _, name = line.partition("\t")
        if left.startswith("ref: "):
            symref[name] = left[len("ref: ") :]
        elif _SHA.fullmatch(left):
            refs[name] = left
    for name in wanted:
        sha = refs.get(f"{name}^{{}}") or refs.get(name)
        if sha is None:
            continue
        target = symref.get(name, name)
        branch = target[len("refs/heads/") :] if target.startswith("refs/heads/") else None
        return sha, branch
    return None, None


@contextlib.asynccontextmanager
async def worktree_lock(mirror: Path, *, exclusive: bool = True) -> AsyncIterator[None]:
    """Hold ``mirror``'s worktree lock: exclusive to change its worktrees, shared to list them."""
    path = mirror.with_name(f"{mirror.name.removesuffix('.git')}.worktrees.lock")
    async with _flock(path, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH):
        yield


@contextlib.asynccontextmanager
async def _flock(path: Path, mode: int, wait_s: float = LOCK_WAIT_S) -> AsyncIterator[None]:
    """flock ``path`` without blocking the loop: LOCK_NB, polled 10..100 ms to a deadline."""
    deadline = time.monotonic() + wait_s
    pause = LOCK_POLL_MIN_S
    while (handle := _try_flock(path, mode)) is None:
        if time.monotonic() >= deadline:
            raise MirrorError(f"{path.name} stayed locked for {wait_s:g}s")
        await asyncio.sleep(pause)
        pause = min(pause * 2, LOCK_POLL_MAX_S)
    try:
        yield
    finally:
        handle.close()


def _try_flock(path: Path, mode: int) -> IO[bytes] | None:
    handle = open(path, "ab")  # noqa: SIM115 - the lock lives as long as the open file
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _config_sha(mirror: Path) -> str:
    digest = hashlib.sha256()
    for name in ("config", "config.worktree"):
        with contextlib.suppress(FileNotFoundError):
            digest.update(name.encode() + b"\0" + (mirror / name).read_bytes() + b"\0")
    return digest.hexdigest()


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (links not followed); blocking: run it in a thread."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, sort_keys=True))
    os.replace(tmp, path)
