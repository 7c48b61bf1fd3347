"""``submit --workspace REPO[@REF]`` and its companions, turned into the task's ``workspace``.

Everything is checked here through :mod:`agentflow.gitspec`, as the API checks it again, so a bad
value is one usage line before any request is sent.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from agentflow import gitspec
from agentflow.gitspec import WorkspaceSpec

__all__ = [
    "resolve_repo_paths",
    "split_repo_ref",
    "workspace_body",
    "workspace_options",
    "workspace_rows",
]

F = TypeVar("F", bound=Callable[..., Any])


def _absolute(repo: str) -> str:
    """``./r.git`` and ``../r.git`` name a repository on the workers' machine: make them
    absolute here, where the user means them."""
    if repo in (".", "..") or repo.startswith(("./", "../")):
        return os.path.abspath(repo)
    return repo


def _is_repo(text: str) -> bool:
    try:
        gitspec.check_repo(_absolute(text))
    except gitspec.GitSpecError:
        return False
    return True


def split_repo_ref(text: str) -> tuple[str, str | None]:
    """``REPO[@REF]`` split at the last ``@``. There is no ref when nothing follows the ``@``,
    when what follows holds a ``:`` (``git@h:o/r.git``), or when what precedes it is no
    repository (``ssh://git@h/r``): then the whole text is the repository."""
    repo, at, ref = text.rpartition("@")
    if not at:
        return _absolute(text), None
    if not ref:
        return _absolute(repo), None
    if ":" in ref or not _is_repo(repo):
        return _absolute(text), None
    return _absolute(repo), ref


def workspace_options(command: F) -> F:
    """The ``--workspace`` options of ``submit``."""
    options = [
        click.option(
            "--workspace",
            metavar="REPO[@REF]",
            help="Run in a fresh git worktree of REPO at REF (default: its default branch); "
            "the changes come back as a commit on the task's branch.",
        ),
        click.option("--branch", help="Branch for the result (default agentflow/<task id>)."),
        click.option(
            "--sparse", multiple=True, metavar="DIR", help="Check out only DIR, repeatable."
        ),
        click.option("--no-commit", is_flag=True, help="Leave the changes uncommitted."),
        click.option("--no-push", is_flag=True, help="Commit, but do not push the branch."),
        click.option("--commit-message", help="The commit's message (default: the title)."),
        click.option("--author", help="The commit's author, 'Name <address>'."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def workspace_body(
    *,
    workspace: str | None,
    branch: str | None,
    sparse: tuple[str, ...],
    no_commit: bool,
    no_push: bool,
    commit_message: str | None,
    author: str | None,
) -> dict[str, Any] | None:
    """The task's ``workspace`` (defaults left out), None without ``--workspace``; a bad value
    or a companion option without ``--workspace`` is a UsageError."""
    if workspace is None:
        given = [
            name
            for name, value in (
                ("--branch", branch),
                ("--sparse", sparse),
                ("--no-commit", no_commit),
                ("--no-push", no_push),
                ("--commit-message", commit_message),
                ("--author", author),
            )
            if value
        ]
        if given:
            raise click.UsageError(f"{', '.join(given)} needs --workspace REPO[@REF]")
        return None
    repo, ref = split_repo_ref(workspace)
    try:
        spec = WorkspaceSpec(
            repo=repo,
            ref=ref,
            branch=branch,
            commit=not no_commit,
            push=not (no_push or no_commit),  # nothing committed, nothing to push
            sparse=tuple(gitspec.check_sparse(p) for p in sparse),
            message=commit_message,
            author=author,
        )
    except gitspec.GitSpecError as err:
        raise click.UsageError(f"--workspace: {err}") from None
    return spec.to_wire()


def resolve_repo_paths(data: dict[str, Any], base: Path) -> None:
    """A workflow file's ``./`` and ``../`` repos, made absolute against the file's folder
    (in place): paths name repositories on the workers' machine, not relative to a worker."""
    holders = [data.get("defaults"), *(data.get("tasks") or [])]
    for holder in holders:
        workspace = holder.get("workspace") if isinstance(holder, dict) else None
        repo = workspace.get("repo") if isinstance(workspace, dict) else None
        if isinstance(repo, str) and (repo in (".", "..") or repo.startswith(("./", "../"))):
            assert isinstance(workspace, dict)
            workspace["repo"] = str((base / repo).resolve())


def _changes(result: Mapping[str, Any]) -> str:
    if not result.get("commit"):
        return "none"
    total = result.get("files_total", 0)
    noun = "file" if total == 1 else "files"
    return f"{total} {noun}, +{result.get('insertions', 0)} -{result.get('deletions', 0)}"


def workspace_rows(view: Mapping[str, Any]) -> list[list[str]]:
    """``status`` rows for a task's workspace: where it started, what it made, any conflicts."""
    spec = view.get("workspace")
    if not isinstance(spec, Mapping):
        return []
    where = spec.get("repo", "") + (f"@{spec['ref']}" if spec.get("ref") else "")
    branch = spec.get("branch") or gitspec.default_branch(str(view.get("id", "")))
    rows = [["workspace", f"{where} -> {branch}"]]
    result = view.get("workspace_result")
    if isinstance(result, Mapping):
        rows.append(["base", str(result.get("base", ""))])
        rows.append(["commit", str(result.get("commit") or "")])
        rows.append(["changes", _changes(result)])
        if result.get("conflicts"):
            rows.append(["conflicts", ", ".join(result["conflicts"])])
    return rows
