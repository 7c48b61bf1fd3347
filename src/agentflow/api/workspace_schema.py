"""The ``workspace`` of a submitted task, checked field by field through :mod:`agentflow.gitspec`.

Each check is the one the worker runs again when it decodes the task, so a bad repo, ref, branch,
sparse path, author or message is a 422 naming its field, and nothing is committed. ``repo`` is
optional here because a workflow's defaults may supply it; a lone task must give one
(``TaskIn`` says so).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from agentflow import gitspec
from agentflow.gitspec import MAX_SPARSE, WorkspaceSpec

if TYPE_CHECKING:
    from agentflow.api.schemas import WorkflowDefaultsIn, WorkflowTaskIn

__all__ = ["WorkspaceIn", "check_cwd", "check_flow_workspaces"]


def check_cwd(cwd: str, where: str = "") -> None:
    """With a workspace, ``cwd`` is a directory inside the worktree (a ValueError, prefixed with
    ``where``, when it is not)."""
    try:
        gitspec.check_sparse(cwd)
    except gitspec.GitSpecError as err:
        raise ValueError(
            f"{where}with a workspace, cwd is relative to the worktree: {err}"
        ) from None


class WorkspaceIn(BaseModel):
    """A git workspace: where the task starts (``repo``, ``ref``), where its result goes
    (``branch``), whether it commits and pushes, and an optional sparse cone."""

    model_config = ConfigDict(extra="forbid")

    repo: str | None = None
    ref: str | None = None
    branch: str | None = None
    commit: StrictBool = True
    push: StrictBool = True
    sparse: list[str] = Field(default_factory=list, max_length=MAX_SPARSE)
    message: str | None = None
    author: str | None = None

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        return None if value is None else gitspec.check_repo(value)

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value is None else gitspec.check_ref(value)

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        return None if value is None else gitspec.check_branch(value)

    @field_validator("sparse")
    @classmethod
    def _sparse(cls, value: list[str]) -> list[str]:
        return [gitspec.check_sparse(path) for path in value]

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return None if value is None else gitspec.check_message(value)

    @field_validator("author")
    @classmethod
    def _author(cls, value: str | None) -> str | None:
        return None if value is None else gitspec.check_author(value)

    @model_validator(mode="after")
    def _push_needs_commit(self) -> WorkspaceIn:
        if self.push and not self.commit:
            raise ValueError("workspace push needs commit: give push false with commit false")
        return self

    @property
    def parent(self) -> tuple[str, str] | None:
        """``(key, "commit"|"branch")`` when ``ref`` names a workflow parent's result."""
        return None if self.ref is None else gitspec.parent_ref(self.ref)

    def to_spec(self) -> dict[str, Any]:
        """The wire form the replicated ``TaskSpec`` carries (defaults left out)."""
        if self.repo is None:
            raise ValueError("workspace needs a repo")
        return WorkspaceSpec(
            repo=self.repo,
            ref=self.ref,
            branch=self.branch,
            commit=self.commit,
            push=self.push,
            sparse=tuple(self.sparse),
            message=self.message,
            author=self.author,
        ).to_wire()


def check_flow_workspaces(
    tasks: Sequence[WorkflowTaskIn], defaults: WorkflowDefaultsIn | None
) -> None:
    """Once the defaults apply: every workspace names a repo, a ``${parents.K..}`` ref names
    a dependency, ``cwd`` lies inside the worktree, and a merge task has a workspace and merges
    dependencies that push to the same repository. ValueError (a 422) names the task."""
    merged = {task.id: task.with_defaults(defaults) for task in tasks}
    for task in merged.values():
        workspace = task.workspace
        if workspace is None:
            if task.merge is not None:
                raise ValueError(f"task {task.id}: merge needs a workspace (the target's repo)")
            continue
        if workspace.repo is None:
            raise ValueError(f"task {task.id}: workspace needs a repo (or defaults.workspace.repo)")
        parent = workspace.parent
        if parent is not None and parent[0] not in task.dependencies:
            raise ValueError(
                f"task {task.id}: workspace ref names parent {parent[0]!r}, "
                "which is not one of its dependencies"
            )
        if task.cwd is not None:
            check_cwd(task.cwd, f"task {task.id}: ")
        _check_merge(task, workspace.repo, merged)


def _check_merge(task: WorkflowTaskIn, repo: str, tasks: Mapping[str, WorkflowTaskIn]) -> None:
    for key in task.merge or ():
        if key not in task.dependencies:
            raise ValueError(
                f"task {task.id}: merges {key!r}, which is not one of its dependencies"
            )
        source = tasks[key].workspace if key in tasks else None
        if source is None or source.repo is None or not source.push:
            raise ValueError(f"task {task.id}: merges {key!r}, which pushes no workspace branch")
        if gitspec.repo_key(source.repo) != gitspec.repo_key(repo):
            raise ValueError(f"task {task.id}: merges {key!r}, whose repo is not {repo}")
