"""Click's own usage errors are one line and an exit code like every other CLI error, and a
reader that closes the pipe early ends a command quietly."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_cli import CLI, run

MASTER = str(Path(CLI).with_name("agentflow-master"))


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("submit", "--priority", "bogus", "-c", "true"), "'bogus' is not one of"),
        (("nosuch",), "No such command 'nosuch'"),
        (("tasks", "--bogus"), "No such option '--bogus'"),
        (("lock", "acquire"), "Missing argument 'NAME'"),
    ],
)
def test_a_usage_error_is_one_line_naming_the_help_to_read(
    args: tuple[str, ...], words: str
) -> None:
    done = run(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and words in lines[0]
    assert lines[0].endswith("--help')")


def test_the_master_script_names_itself_in_the_hint() -> None:
    done = subprocess.run([MASTER, "--bogus"], capture_output=True, text=True, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().endswith("(see 'agentflow-master --help')")


def test_a_group_without_a_subcommand_is_help_and_success() -> None:
    done = run("lock")
    assert done.returncode == 0
    assert "Commands:" in done.stdout


def test_a_closed_pipe_ends_the_command_without_a_word() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: EPIPE for certain
    try:
        done = subprocess.run(
            [CLI, "config", "show", "--role", "worker"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.stderr == ""
    assert done.returncode == 141
