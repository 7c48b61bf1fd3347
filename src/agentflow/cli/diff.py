"""``agentflow diff TASK``: what a task's git workspace changed.

The task's view holds its result (base, commit, branch, changed files). With ``--stat``, or no
git on this machine, the stored file list is printed. Otherwise the commit is fetched, with the
user's own git credentials, into ``--repo``, the current repository, or a cache folder, and
``git diff base commit`` prints it. What the master answered is checked through gitspec before
git sees it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from agentflow import gitspec
from agentflow.cli.tasks import client_options, make_client
from agentflow.errors import ConfigError
from agentflow.gitspec import WorkspaceResult

__all__ = ["chosen_result", "diff", "fetch_and_diff", "stat_lines"]

GIT_TIMEOUT_S = 600.0  # a fetch of a large repository; the diff itself is local


def chosen_result(view: Mapping[str, Any], attempt: int | None) -> WorkspaceResult | None:
    """The last attempt's result, or attempt ``attempt``'s (1-based); None when none is kept."""
    if attempt is None:
        wire = view.get("workspace_result")
    else:
        history = view.get("attempt_history") or []
        if not 1 <= attempt <= len(history):
            raise ConfigError(f"task {view.get('id')} has no attempt {attempt}")
        wire = history[attempt - 1].get("workspace")
        if isinstance(wire, Mapping) and set(wire) == {"base"}:
            wire = None  # only its base: it never finished
    if wire is None:
        return None
    try:
        return WorkspaceResult.from_wire(wire)
    except gitspec.GitSpecError as err:
        raise ConfigError(f"the master's workspace result is malformed: {err}") from None


def stat_lines(result: WorkspaceResult) -> list[str]:
    """The stored changed files, one a line, and a total."""
    width = max((len(f.path) for f in result.files), default=0)
    lines = [
        f"{f.path:<{width}} | "
        + ("binary" if f.insertions < 0 else f"+{f.insertions} -{f.deletions}")
        for f in result.files
    ]
    total = f"{result.files_total} files changed, +{result.insertions} -{result.deletions}"
    if result.files_total > len(result.files):
        total += f" (the first {len(result.files)} listed)"
    return [*lines, total]


def _git(args: list[str], cwd: Path, *, timeout_s: float = 60.0) -> bool:
    done = subprocess.run(["git", *args], cwd=cwd, check=False, timeout=timeout_s)
    return done.returncode == 0


def _work_repo(chosen: Path | None, repo: str) -> Path:
    """Where to fetch: ``--repo``, else the current repository, else a cache folder."""
    if chosen is not None:
        return chosen
    inside = subprocess.run(
        ["git", "rev-parse", "--git-dir"], capture_output=True, check=False, timeout=60
    )
    if inside.returncode == 0:
        return Path.cwd()
    cache = Path.home() / ".cache" / "agentflow" / "diff" / f"{gitspec.repo_key(repo)}.git"
    if not cache.exists():
        cache.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", str(cache)], check=True, timeout=60)
    return cache


def fetch_and_diff(repo: str, result: WorkspaceResult, where: Path | None) -> int:
    """Fetch the result's commit (or its branch) from ``repo`` and print ``git diff``; the
    exit code of the diff, or 1 when the commit could not be fetched."""
    gitspec.check_repo(repo)
    assert result.commit is not None
    cwd = _work_repo(where, repo)
    fetched = _git(["fetch", "-q", "--no-tags", repo, result.commit], cwd, timeout_s=GIT_TIMEOUT_S)
    if not fetched and result.branch is not None:
        heads = f"refs/heads/{result.branch}"
        fetched = _git(["fetch", "-q", "--no-tags", repo, heads], cwd, timeout_s=GIT_TIMEOUT_S)
    if not fetched:
        click.echo(f"error: could not fetch {result.commit[:12]} from {repo}", err=True)
        return 1
    done = subprocess.run(["git", "diff", result.base, result.commit, "--"], cwd=cwd, check=False)
    return done.returncode


@click.command("diff")
@click.argument("task_id")
@click.option("--stat", is_flag=True, help="List the changed files the task recorded.")
@click.option(
    "--repo",
    "where",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="A local repository to fetch into (default: this one, else a cache folder).",
)
@click.option("--attempt", type=click.IntRange(min=1), help="An earlier attempt's changes.")
@client_options
def diff(
    *,
    master_url: str | None,
    api_token: str | None,
    task_id: str,
    stat: bool,
    where: Path | None,
    attempt: int | None,
) -> None:
    """Show what a task's git workspace changed: the diff from its base to its commit."""
    with make_client(master_url, api_token) as client:
        view = client.get(task_id).raw
    result = chosen_result(view, attempt)
    if result is None:
        click.echo(f"task {task_id} has no workspace result", err=True)
        sys.exit(1)
    if result.commit is None:
        click.echo("no changes")
        return
    spec = view.get("workspace") or {}
    if stat or shutil.which("git") is None or not spec.get("repo"):
        for line in stat_lines(result):
            click.echo(line)
        return
    sys.exit(fetch_and_diff(spec["repo"], result, where))
