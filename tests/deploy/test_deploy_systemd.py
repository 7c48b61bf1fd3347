"""deploy/systemd/: `systemd-analyze verify` finds nothing in the units (not even a warning),
and they and their environment files name only real flags and settings.

verify checks that ExecStart's program exists, so each unit is verified in a copy whose install
prefix (/opt/agentflow/, where docs/guide/deploy.md puts the venv) is this venv's: the one
change made. The worker template is verified as an instance (agentflow-worker@1.service), so
its specifiers are expanded too."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentflow.settings import MASTER_SETTINGS, WORKER_SETTINGS
from tests.deploy.manifests import unknown_settings
from tests.docs.blocks import ROOT

UNITS = ROOT / "deploy" / "systemd"
PREFIX = "/opt/agentflow/"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
FLAGS = {
    "master": {s.flag for s in MASTER_SETTINGS},
    "worker": {s.flag for s in WORKER_SETTINGS},
}


def _unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def _directives(path: Path, key: str) -> list[str]:
    text = path.read_text().replace("\\\n", " ")
    return [
        line.split("=", 1)[1].strip() for line in text.splitlines() if line.startswith(key + "=")
    ]


@pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is missing (make sysdeps: Debian's systemd)"
)
@pytest.mark.parametrize("unit", _unit_files(), ids=lambda p: p.name)
def test_systemd_analyze_verify_is_silent(unit: Path, tmp_path: Path) -> None:
    assert SYSTEMD_ANALYZE is not None
    name = unit.name.replace("@.service", "@1.service")
    copy = tmp_path / name
    copy.write_text(unit.read_text().replace(PREFIX, str(Path(sys.prefix)) + "/"))
    ran = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0 and not (ran.stdout + ran.stderr).strip(), ran.stdout + ran.stderr


@pytest.mark.parametrize("unit", _unit_files(), ids=lambda p: p.name)
def test_units_run_the_installed_command_with_real_flags(unit: Path) -> None:
    (exec_start,) = _directives(unit, "ExecStart")
    argv = shlex.split(exec_start)
    assert argv[0] == PREFIX + "bin/agentflow"
    role = argv[1]
    flags = [a for a in argv[2:] if a.startswith("--")]
    assert flags and set(flags) <= FLAGS[role], flags
    for env_file in _directives(unit, "EnvironmentFile"):
        local = UNITS / Path(env_file).name  # the example shipped beside the unit
        names = [
            line.split("=", 1)[0]
            for line in local.read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        assert names and not unknown_settings(role, names), local
    inline = [e.split("=", 1)[0] for e in _directives(unit, "Environment")]
    assert not unknown_settings(role, inline)
    for credential in _directives(unit, "LoadCredential"):
        name = credential.split(":", 1)[0]
        assert f"${{CREDENTIALS_DIRECTORY}}/{name}" in argv  # each token is read from its file
