"""The source of the release before format versions, from git, for tests that run version N
next to this code (same virtual environment, ``PYTHONPATH`` pointing at it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORMAT_CHANGE = "src/agentflow/state/envelope.py"  # added by the commit that versioned formats


def previous_release(tmp: Path) -> Path | None:
    """The source tree of the commit before format versions, or None without git history."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    found = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", FORMAT_CHANGE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    commits = found.stdout.split()
    if found.returncode != 0 or not commits:
        return None
    parent = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{commits[-1]}^"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if parent.returncode != 0:
        return None  # a shallow clone: the commit before is not here
    archive = subprocess.run(
        ["git", "archive", parent.stdout.strip(), "src"], cwd=ROOT, capture_output=True, check=True
    )
    tmp.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive.stdout, check=True)
    return tmp / "src"
