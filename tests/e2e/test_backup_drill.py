"""deploy/dr-drill runs end to end (a small bounded run): backup, restore, force a new cluster,
each step timed, nothing acknowledged before the backup (or before quorum was lost) missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.raft_only  # the drill backs up, restores and forces a new Raft cluster

DRILL = Path(__file__).resolve().parents[2] / "deploy" / "dr-drill"


def test_the_drill_recovers_every_acknowledged_task(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(DRILL), "--tasks", "300", "--workdir", str(tmp_path / "drill")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for step in ("back up 300+ tasks", "restore the backup", "force the survivor"):
        assert any(line.startswith(step) and line.endswith("s") for line in lines), done.stdout
    assert "0 missing after the restore" in done.stdout
    assert "with 0 acknowledged tasks missing" in done.stdout
