"""Git remotes for tests and benchmarks: a bare repository on disk, served over git://.

``make_remote(tmp, files)`` makes a bare repository with one commit on ``main``;
``GitDaemon(root)`` serves every repository under ``root`` at ``git://127.0.0.1:<port>/<name>``
with pushes enabled (``--enable=receive-pack``), as the §8 experiments did. Test machinery
only: never imported by anything a worker or master runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

from agentflow.testing.ports import free_port

__all__ = ["GitDaemon", "make_remote", "seed_git"]

START_WAIT_S = 10.0
STOP_WAIT_S = 5.0
_SEED_ENV = {
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Seed",
    "GIT_AUTHOR_EMAIL": "seed@agentflow.test",
    "GIT_COMMITTER_NAME": "Seed",
    "GIT_COMMITTER_EMAIL": "seed@agentflow.test",
}


def seed_git(*args: str, cwd: Path | None = None) -> str:
    """Run git as a test's own user would, without anyone's config; its stdout, stripped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")} | _SEED_ENV
    done = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return done.stdout.decode().strip()


def make_remote(tmp: Path, files: dict[str, str], name: str = "remote") -> tuple[Path, str]:
    """``tmp/<name>.git``, bare, with one commit of ``files`` on main; (its path, the commit).

    The seed clone stays at ``tmp/<name>-seed`` for tests that move the remote on.
    """
    bare, work = tmp / f"{name}.git", tmp / f"{name}-seed"
    seed_git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed_git("init", "--quiet", "--initial-branch=main", str(work))
    for path, text in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    seed_git("add", "-A", cwd=work)
    seed_git("commit", "--quiet", "-m", "seed", cwd=work)
    seed_git("push", "--quiet", str(bare), "main", cwd=work)
    return bare, seed_git("rev-parse", "HEAD", cwd=work)


class GitDaemon:
    """``git daemon`` on 127.0.0.1 serving ``root``, for as long as the ``with`` block runs."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    def url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.port}/{name}"

    def __enter__(self) -> GitDaemon:
        argv = [
            "git", "daemon", "--listen=127.0.0.1", f"--port={self.port}",
            f"--base-path={self.root}", "--export-all", "--enable=receive-pack", "--reuseaddr",
            str(self.root),
        ]  # fmt: skip
        self._proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_WAIT_S
        while not _listening(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"git daemon did not listen on port {self.port}")
            time.sleep(0.02)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
