"""Git workspace specs (design 19 §1): pure values and checks, no os, no subprocess.

PARTIAL, written by the worker helper so that its branch builds: only ``repo_key``,
``default_branch``, ``FileChange`` and ``WorkspaceResult`` (no ``from_wire`` yet) here. The
spec helper's ``gitspec.py`` (the full §1 contract) replaces this file on merge.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

__all__ = ["FileChange", "WorkspaceResult", "default_branch", "repo_key"]


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
