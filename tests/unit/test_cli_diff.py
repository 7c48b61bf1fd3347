"""``agentflow diff``: the result chosen from a view, the stored ``--stat``, and a real diff fetched
from a real repository."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentflow.cli.diff import chosen_result, fetch_and_diff, stat_lines
from agentflow.errors import ConfigError
from agentflow.gitspec import WorkspaceResult

SHA, NEW = "a" * 40, "b" * 40


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def test_the_last_result_or_an_attempts() -> None:
    view: dict[str, Any] = {
        "id": "t-1",
        "workspace_result": {"base": SHA, "commit": NEW, "files": [["a", 1, 0]], "files_total": 1},
        "attempt_history": [{"workspace": {"base": SHA}}, {"workspace": {"base": SHA}}],
    }
    result = chosen_result(view, None)
    assert result is not None and result.commit == NEW
    assert chosen_result(view, 1) is None  # only its base: it never finished
    with pytest.raises(ConfigError, match="no attempt 3"):
        chosen_result(view, 3)
    assert chosen_result({"id": "t-2"}, None) is None
    with pytest.raises(ConfigError, match="malformed"):
        chosen_result({"workspace_result": {"base": "HEAD"}}, None)


def test_stat_lists_the_stored_files() -> None:
    result = WorkspaceResult.from_wire(
        {
            "base": SHA,
            "commit": NEW,
            "files": [["src/app.py", 10, 2], ["logo.png", -1, -1]],
            "files_total": 3,
            "insertions": 12,
            "deletions": 2,
        }
    )
    assert stat_lines(result) == [
        "src/app.py | +10 -2",
        "logo.png   | binary",
        "3 files changed, +12 -2 (the first 2 listed)",
    ]


def test_the_diff_is_fetched_from_the_repository(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    remote = tmp_path / "remote.git"
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    ident = ["-c", "user.name=T", "-c", "user.email=t@x"]
    (work / "a.txt").write_text("one\n")
    _git(work, "add", "a.txt")
    _git(work, *ident, "commit", "-q", "-m", "seed")
    base = _git(work, "rev-parse", "HEAD")
    (work / "a.txt").write_text("one\ntwo\n")
    _git(work, *ident, "commit", "-q", "-am", "more")
    commit = _git(work, "rev-parse", "HEAD")
    _git(work, "push", "-q", str(remote), "HEAD:refs/heads/agentflow/t-1")
    local = tmp_path / "local.git"
    subprocess.run(["git", "init", "-q", "--bare", str(local)], check=True)
    capfd.readouterr()
    result = WorkspaceResult(base=base, commit=commit, branch="agentflow/t-1", pushed=True)
    assert fetch_and_diff(str(remote), result, local) == 0
    assert "+two" in capfd.readouterr().out
    missing = WorkspaceResult(base=base, commit=NEW, branch="agentflow/none")
    assert fetch_and_diff(str(remote), missing, local) == 1
    assert "could not fetch" in capfd.readouterr().err
