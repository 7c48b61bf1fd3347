"""`agentflow submit --wait` as a user meets it: the id first on stderr, the output live (as
`logs -f` shows it), the task's outcome as the exit code, and Ctrl-C that stops the watching but
never the task. Also `submit --resources/--label/--group/--env/--cwd`, bad values refused before
anything is sent, and durations (`5m`, `1h30m`) on submit, master and worker."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from agentflow.client import Client
from tests.e2e.procs import Processes, live_workers, wait_until
from tests.e2e.test_cli import CLI, run

# Prints `first`, then waits for the file {stop} (at most 60 s) before printing `second`.
UNTIL_STOP = (
    "echo first; i=0; while [ ! -e {stop} ] && [ $i -lt 1200 ]; do i=$((i+1)); sleep 0.05; done; "
    "echo second; echo err >&2"
)

# Runs the command with SIGINT at its default, so Ctrl-C reaches the CLI even where this test
# runs with SIGINT ignored (a background job inherits that, and exec keeps it).
WITH_CTRL_C = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One master and one worker for the whole file, both given durations in the new forms."""
    processes = Processes(tmp_path_factory.mktemp("submit"))
    try:
        _, master_url = processes.master(
            "m1",
            None,
            "--worker-timeout",
            "1m30s",
            "--lost-worker-retention",
            "1.5h",
            "--heartbeat-interval",
            "2s",
        )
        processes.worker(
            "w1",
            master_url,
            "--heartbeat-interval",
            "1500ms",
            "--labels",
            "team=ml",
            "--resources",
            "cpu=4,gpu=1,memory=4G",
            "--slots",
            "4",
        )
        wait_until(lambda: live_workers(master_url) == 1, what="the worker")
        yield master_url
    finally:
        processes.close()


class Watching:
    """``agentflow submit --wait ...`` running, its stdout and stderr lines collected as they
    come."""

    def __init__(self, url: str, *args: str) -> None:
        self.popen = subprocess.Popen(
            [*WITH_CTRL_C, CLI, "submit", "--wait", "--master-url", url, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: IO[str], lines: list[str]) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))

    @property
    def task_id(self) -> str:
        wait_until(lambda: self.err, what="the task id on stderr")
        return self.err[0]

    def finish(self, timeout_s: float = 60.0) -> int:
        try:
            self.popen.wait(timeout=timeout_s)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
        for reader in self._readers:
            reader.join(timeout=5)
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.popen.stdout.close()
        self.popen.stderr.close()
        return self.popen.returncode


def test_wait_streams_the_output_while_the_task_runs(url: str, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    watching = Watching(url, "-c", UNTIL_STOP.format(stop=stop))
    assert re.fullmatch(r"t-[0-9a-f]+", watching.task_id)
    # `first` arrives while the task still waits for the stop file: it cannot have ended.
    wait_until(lambda: watching.out == ["first"], what="the first line, live")
    assert watching.popen.poll() is None
    stop.touch()
    assert watching.finish() == 0
    assert watching.out == ["first", "second"]
    assert watching.err == [watching.task_id, "err"]
    with Client(url) as client:
        assert client.get(watching.task_id).status == "completed"


def test_wait_exits_with_the_outcome(url: str) -> None:
    failed = Watching(url, "-c", "echo partial; exit 3")
    assert failed.finish() == 3
    assert failed.out == ["partial"]
    assert failed.err == [failed.task_id, f"task {failed.task_id} failed: exit code 3"]

    slow = Watching(url, "--timeout", "250ms", "-c", "sleep 30")
    assert slow.finish() == 1
    assert len(slow.err) == 2
    assert slow.err[1].startswith(f"task {slow.task_id} timed_out: ")

    done = Watching(url, "--", "echo", "fine")
    assert done.finish() == 0
    assert (done.out, done.err) == (["fine"], [done.task_id])


def test_ctrl_c_stops_watching_and_the_task_goes_on(url: str, tmp_path: Path) -> None:
    stop = tmp_path / "stop"
    watching = Watching(url, "-c", UNTIL_STOP.format(stop=stop))
    task_id = watching.task_id
    watching.popen.send_signal(signal.SIGINT)
    assert watching.finish() == 130
    assert watching.err[1:] == [
        f"stopped watching: task {task_id} goes on (cancel it: agentflow cancel {task_id})"
    ]
    with Client(url) as client:
        assert not client.get(task_id).done  # it waits for the stop file: not cancelled
        stop.touch()
        assert client.wait(task_id, timeout_s=60).status == "completed"
        assert client.output(task_id)["stdout"] == "first\nsecond\n"


def test_submit_fields_reach_the_task(url: str, tmp_path: Path) -> None:
    done = Watching(
        url,
        "--resources",
        "cpu=2,gpu=1,memory_mb=512",
        "--label",
        "team=ml",
        "--env",
        "GREETING=hello, world",
        "--env",
        "EMPTY=",
        "--cwd",
        str(tmp_path),
        "--timeout",
        "5m",
        "--backoff",
        "1m30s",
        "-c",
        'pwd; echo "$GREETING"; echo "[$EMPTY]"',
    )
    assert done.finish() == 0
    assert done.out == [str(tmp_path), "hello, world", "[]"]
    with Client(url) as client:
        task = client.get(done.task_id).raw
        assert task["resources"] == {"cpu": 2.0, "gpu": 1.0, "memory_mb": 512.0}
        assert task["labels"] == {"team": "ml"}
        assert task["timeout_s"] == 300.0
        elsewhere = run("submit", "--master-url", url, "--group", "nightly", "-c", "true")
        assert elsewhere.returncode == 0, elsewhere.stderr
        assert client.get(elsewhere.stdout.strip()).raw["group"] == "nightly"
        client.cancel(elsewhere.stdout.strip())


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (
            ["--resources", "cpu=lots"],
            "error: Invalid value for '--resources': resource cpu must be a number, got 'lots'",
        ),
        (["--resources", "cpu"], "error: --resources must look like NAME=VALUE, got 'cpu'"),
        (
            ["--resources", "gpu=-1"],
            "error: Invalid value for '--resources': resource gpu must be a number from 0 up",
        ),
        (
            ["--resources", "gpu=nan"],
            "error: Invalid value for '--resources': resource gpu must be a number from 0 up",
        ),
        (["--label", "team"], "error: --label must look like NAME=VALUE, got 'team'"),
        (["--env", "=x"], "error: --env must look like NAME=VALUE, got '=x'"),
        (["--timeout", "5x"], "error: Invalid value for '--timeout': invalid duration '5x'"),
        (["--timeout", "-1s"], "error: Invalid value for '--timeout': invalid duration '-1s'"),
        (["--backoff", ""], "error: Invalid value for '--backoff': invalid duration ''"),
        (["--timeout", "30d"], "error: Invalid value for '--timeout': '30d' is longer than 7d"),
        (["--group", "a/b"], "error: group: "),
    ],
)
def test_bad_values_are_one_line_and_nothing_is_submitted(
    url: str, flags: list[str], message: str
) -> None:
    before = _task_ids(url)
    refused = run("submit", "--master-url", url, *flags, "--wait", "-c", "true")
    assert refused.returncode == 2
    assert refused.stderr.startswith(message)
    assert len(refused.stderr.splitlines()) == 1
    assert _task_ids(url) == before


def _task_ids(url: str) -> list[str]:
    tasks = httpx.get(f"{url}/api/v1/tasks", params={"limit": 1000}).json()["tasks"]
    return [task["id"] for task in tasks]


def test_durations_on_master_worker_and_other_commands(url: str) -> None:
    """The fixture's master and worker took `1m30s`, `1.5h`, `2s` and `1500ms`; a lock takes
    `--ttl 1m30s`; a bad duration on the master is one line before anything starts."""
    taken = run("lock", "acquire", "dur-lock", "--master-url", url, "--ttl", "1m30s")
    assert taken.returncode == 0, taken.stderr
    assert re.search(r"expires_in=(89|90)(\.\d+)?s", taken.stdout), taken.stdout
    refused = run("master", "--lost-worker-retention", "1h30")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error: ")
    assert "--lost-worker-retention" in refused.stderr
    assert "invalid duration '1h30': unit missing after 30" in refused.stderr
    assert "--timeout DURATION" in run("submit", "--help").stdout
