"""Git remotes for tests and benchmarks: a bare repository on disk, served over git:// or HTTP.

``make_remote(tmp, files)`` makes a bare repository with one commit on ``main``;
``GitDaemon(root)`` serves every repository under ``root`` at ``git://127.0.0.1:<port>/<name>``
with pushes enabled (``--enable=receive-pack``), as the §8 experiments did. ``SmartHttp(root,
token)`` serves them through ``git http-backend`` and answers 401 to a request without
``Authorization: Bearer <token>`` (or Basic with the token as password); it records every
Authorization header it saw. Test machinery only: never imported by anything a worker or master
runs.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from agentflow.testing.ports import free_port

__all__ = ["GitDaemon", "SmartHttp", "make_remote", "seed_git"]

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


class SmartHttp:
    """Smart HTTP over ``git http-backend`` on 127.0.0.1, token required; a ``with`` block."""

    def __init__(self, root: Path, token: str) -> None:
        self.root = Path(root)
        self.token = token
        self.seen_auth: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}"

    def authorized(self, header: str) -> bool:
        basic = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return header in (f"Bearer {self.token}", f"Basic {basic}")

    def __enter__(self) -> SmartHttp:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=STOP_WAIT_S)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._cgi()

            def do_POST(self) -> None:
                self._cgi()

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _cgi(self) -> None:
                auth = self.headers.get("Authorization", "")
                owner.seen_auth.append(auth)
                if not owner.authorized(auth):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="agentflow-test"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path, _, query = self.path.partition("?")
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(owner.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "GIT_CONFIG_GLOBAL": "/dev/null",
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.receivepack",
                    "GIT_CONFIG_VALUE_0": "true",
                    "REMOTE_USER": "agentflow-test",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                }
                done = subprocess.run(
                    ["git", "http-backend"], input=body, env=env, capture_output=True, check=False
                )
                head, _, payload = done.stdout.partition(b"\r\n\r\n")
                status = 200
                headers: list[tuple[str, str]] = []
                for line in head.decode("latin-1").split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
