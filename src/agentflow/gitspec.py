"""Git workspace specs (design 19 §1): pure values and checks, no os, no subprocess.

PARTIAL, written by the worker helper so that its branch builds: the values and
``repo_key``, ``default_branch`` and ``parent_ref``, with no ``check_*`` and no bounds yet. The
spec helper's ``gitspec.py`` (the full §1 contract) replaces this file on merge.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FileChange",
    "GitSpecError",
    "WorkspaceResult",
    "WorkspaceSpec",
    "default_branch",
    "parent_ref",
    "repo_key",
]


def repo_key(url: str) -> str:
    """The mirror's name: sha256 of the normalized URL, 24 hex digits.

    ``https://h/o/r``, ``https://h/o/r/`` and ``https://h/o/r.git`` share one mirror.
    """
    norm = url.strip().rstrip("/").removesuffix(".git").rstrip("/")
    return hashlib.sha256(norm.encode()).hexdigest()[:24]


def default_branch(task_id: str) -> str:
    return "agentflow/" + task_id


@dataclass(frozen=True, slots=True, kw_only=True)
class FileChange:
    path: str
    insertions: int  # -1 with deletions -1: a binary file
    deletions: int


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceResult:
    base: str
    commit: str | None = None
    branch: str | None = None
    pushed: bool = False
    files: tuple[FileChange, ...] = ()
    files_total: int = 0
    insertions: int = 0
    deletions: int = 0
    conflicts: tuple[str, ...] = ()
    merged: tuple[str, ...] = ()
    prepare_ms: int | None = None

    def to_wire(self) -> dict[str, Any]:
        """Empty fields left out; files as ``[[path, ins, del]]``."""
        wire: dict[str, Any] = {"base": self.base}
        for name in ("commit", "branch", "pushed", "files_total", "insertions", "deletions"):
            value = getattr(self, name)
            if value:
                wire[name] = value
        if self.files:
            wire["files"] = [[f.path, f.insertions, f.deletions] for f in self.files]
        if self.conflicts:
            wire["conflicts"] = list(self.conflicts)
        if self.merged:
            wire["merged"] = list(self.merged)
        if self.prepare_ms is not None:
            wire["prepare_ms"] = self.prepare_ms
        return wire


def parent_ref(ref: str) -> tuple[str, str] | None:
    """``"${parents.fix.commit}"`` -> ``("fix", "commit")``; None for a plain ref."""
    m = _PARENT_REF.fullmatch(ref)
    return (m["key"], m["what"]) if m else None


_PARENT_REF = re.compile(r"\$\{parents\.(?P<key>[A-Za-z0-9_.-]{1,64})\.(?P<what>commit|branch)\}")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkspaceSpec:
    repo: str
    ref: str | None = None
    branch: str | None = None
    commit: bool = True
    push: bool = True
    sparse: tuple[str, ...] = ()
    message: str | None = None
    author: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"repo": self.repo}
        for name in ("ref", "branch", "message", "author"):
            if getattr(self, name) is not None:
                wire[name] = getattr(self, name)
        if not self.commit:
            wire["commit"] = False
        if not self.push:
            wire["push"] = False
        if self.sparse:
            wire["sparse"] = list(self.sparse)
        return wire

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> WorkspaceSpec:
        """PARTIAL: types only; the spec helper's version re-runs every §1 check."""
        try:
            return cls(
                repo=str(data["repo"]),
                ref=data.get("ref"),
                branch=data.get("branch"),
                commit=bool(data.get("commit", True)),
                push=bool(data.get("push", True)),
                sparse=tuple(str(p) for p in data.get("sparse") or ()),
                message=data.get("message"),
                author=data.get("author"),
            )
        except (KeyError, TypeError) as exc:
            raise GitSpecError(f"bad workspace: {exc}") from None


class GitSpecError(ValueError):
    """A workspace field breaks a rule of design 19 §1."""
