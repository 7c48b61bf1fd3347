"""``agentflow cluster backup`` / ``restore`` on a single master: an admin token, damaged files
refused in one line before anything is written, and a data dir from before cluster uids."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.procs import Processes
from tests.e2e.test_backup_restore import agentflow

pytestmark = pytest.mark.raft_only  # backup and restore read and write the Raft files

ADMIN = "e2e-admin-token"


def one_line_refusal(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode != 0
    err = result.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err


def test_backup_needs_the_admin_token_and_damaged_files_are_refused(
    procs: Processes, tmp_path: Path
) -> None:
    _proc, url = procs.master("m1", None, "--api-token", ADMIN)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    for _ in range(5):
        made = httpx.post(f"{url}/api/v1/tasks", json={"command": "true"}, headers=auth, timeout=10)
        assert made.status_code == 201, made.text
    backup = tmp_path / "b.backup"
    one_line_refusal(agentflow("cluster", "backup", str(backup), "--master-url", url), "token")
    assert not backup.exists()
    saved = agentflow("cluster", "backup", str(backup), "--master-url", url, "--api-token", ADMIN)
    assert saved.returncode == 0, saved.stderr
    data = backup.read_bytes()

    damaged = {
        "truncated": data[:-10],
        "corrupt": data[:-1] + bytes([data[-1] ^ 1]),
        "not an AgentFlow backup": b"hello",
    }
    for why, content in damaged.items():
        bad = tmp_path / "bad.backup"
        bad.write_bytes(content)
        target = tmp_path / f"d-{why[:3]}"
        argv = ["--data-dir", str(target), "--node-id", "m1"]
        one_line_refusal(agentflow("cluster", "restore", str(bad), *argv), why)
        assert not target.exists()  # nothing written
    used = tmp_path / "used"
    (used / "raft.db").parent.mkdir()
    (used / "raft.db").write_bytes(b"")
    argv = ["--data-dir", str(used), "--node-id", "m1"]
    one_line_refusal(agentflow("cluster", "restore", str(backup), *argv), "not empty")


def test_a_data_dir_without_a_cluster_uid_still_starts(procs: Processes, tmp_path: Path) -> None:
    """main before uids wrote none: such a data dir starts, with the uid its name derives."""
    data_dir = tmp_path / "old-data"
    proc, url = procs.master("m1", None, data_dir=data_dir)
    made = httpx.post(f"{url}/api/v1/tasks", json={"command": "true"}, timeout=10)
    assert made.status_code == 201, made.text
    proc.terminate()
    with sqlite3.connect(data_dir / "raft.db") as db:
        db.execute("DELETE FROM meta WHERE key = 'cluster_uid'")
    db.close()
    proc, url = procs.master("m1", None, data_dir=data_dir)
    got = httpx.get(f"{url}/api/v1/tasks/{made.json()['id']}", timeout=10)
    assert got.status_code == 200, got.text
    proc.terminate()
    with sqlite3.connect(data_dir / "raft.db") as db:
        (uid,) = db.execute("SELECT count(*) FROM meta WHERE key = 'cluster_uid'").fetchone()
    db.close()
    assert uid == 1
