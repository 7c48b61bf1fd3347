"""Git workspace specs (design 19 §1): pure values and checks, no os, no subprocess.

PARTIAL, written by the worker helper so that its branch builds: only ``repo_key`` and
``default_branch`` here. The spec helper's ``gitspec.py`` (the full §1 contract) replaces this
file on merge.
"""

from __future__ import annotations

import hashlib

__all__ = ["default_branch", "repo_key"]


def repo_key(url: str) -> str:
    """The mirror's name: sha256 of the normalized URL, 24 hex digits.

    ``https://h/o/r``, ``https://h/o/r/`` and ``https://h/o/r.git`` share one mirror.
    """
    norm = url.strip().rstrip("/").removesuffix(".git").rstrip("/")
    return hashlib.sha256(norm.encode()).hexdigest()[:24]


def default_branch(task_id: str) -> str:
    return "agentflow/" + task_id
