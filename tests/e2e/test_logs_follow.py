"""`agentflow logs -f` follows the leader like every other command: a first URL that is down
is skipped, and a leader that dies mid-stream is left for the next one, the stream resuming at
the byte it had reached (nothing repeated, nothing lost)."""

from __future__ import annotations

import asyncio
import subprocess
import threading
from pathlib import Path

import httpx

from agentflow.client import AsyncClient, Client
from tests.e2e.procs import Processes, free_port, wait_until
from tests.e2e.test_cli import CLI

# Numbered lines, one every 0.1 s, until the test creates the stop file (at most 60 s).
NUMBERED = (
    "i=0; while [ ! -e {stop} ] && [ $i -lt 600 ]; do i=$((i+1)); echo line$i; sleep 0.1; done"
)


class Follower:
    """``agentflow logs -f`` running; its stdout lines collected as they come."""

    def __init__(self, *args: str) -> None:
        self.popen = subprocess.Popen(
            [CLI, "logs", "-f", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str]:
        try:
            self.popen.wait(timeout=timeout_s)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
        self._reader.join(timeout=5)
        assert self.popen.stdout is not None and self.popen.stderr is not None
        stderr = self.popen.stderr.read()
        self.popen.stdout.close()
        self.popen.stderr.close()
        return self.popen.returncode, stderr


def numbered(count: int) -> list[str]:
    return [f"line{i}" for i in range(1, count + 1)]


def test_logs_follow_skips_a_first_url_that_is_down(procs: Processes, tmp_path: Path) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    dead = f"http://127.0.0.1:{free_port()}"
    with Client(url) as client:
        task = client.submit("for i in 1 2 3 4 5; do echo line$i; sleep 0.1; done; echo oops >&2")
    follower = Follower(task.id, "--master-url", f"{dead},{url}")
    code, stderr = follower.finish()
    assert code == 0, stderr
    assert follower.lines == numbered(5)
    assert stderr == "oops\n"


def test_async_follow_skips_a_first_url_that_is_down(procs: Processes) -> None:
    _, url = procs.master()
    procs.worker("w1", url)
    dead = f"http://127.0.0.1:{free_port()}"

    async def follow() -> tuple[bytes, bytes]:
        async with AsyncClient([dead, url]) as client:
            task = await client.submit("echo out; echo err >&2; echo more")
            out = b"".join([c async for c in client.follow(task.id)])
            err = b"".join([c async for c in client.follow(task.id, stream="stderr")])
            tail = b"".join([c async for c in client.follow(task.id, offset=4)])
            return out + tail, err

    assert asyncio.run(follow()) == (b"out\nmore\nmore\n", b"err\n")


def test_logs_follow_resumes_on_the_new_leader(procs: Processes, tmp_path: Path) -> None:
    cluster = procs.cluster(3)
    leader = cluster.leader()
    procs.worker("w1", cluster.urls)
    stop = tmp_path / "stop"
    with Client(cluster.urls) as client:
        task = client.submit(NUMBERED.format(stop=stop))
    urls = [cluster.url(leader)] + [cluster.url(n) for n in cluster.masters if n != leader]
    follower = Follower(task.id, "--master-url", ",".join(urls))
    wait_until(lambda: len(follower.lines) >= 3, 30, "the first lines streamed")
    cluster.kill9(leader)
    survivors = [n for n in cluster.masters if n != leader]
    cluster.leader(survivors)
    seen = len(follower.lines)
    wait_until(lambda: len(follower.lines) >= seen + 5, 30, "lines streamed after the failover")
    stop.touch()
    code, stderr = follower.finish()
    assert code == 0, stderr
    assert follower.lines == numbered(len(follower.lines)), follower.lines


def test_output_offset_is_validated(procs: Processes) -> None:
    _, url = procs.master()
    with Client(url) as client:
        task = client.submit("true")
    path = f"{url}/api/v1/tasks/{task.id}/output"
    for params in (
        {"follow": "true", "offset": "-1", "stream": "stdout"},
        {"follow": "true", "offset": str(2**63), "stream": "stdout"},
        {"follow": "true", "offset": "5"},
        {"follow": "true", "stream": "both"},
        {"stream": "stdout"},
    ):
        answer = httpx.get(path, params=params, timeout=10)
        assert answer.status_code in (400, 422), (params, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
