"""The Dockerfile's instructions, continuation lines joined and comments dropped."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.docs.blocks import ROOT

__all__ = ["DOCKERFILE", "healthcheck_argv", "instructions"]

DOCKERFILE = ROOT / "Dockerfile"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def healthcheck_argv(path: Path = DOCKERFILE) -> list[str]:
    """The exec form of the HEALTHCHECK's command."""
    (check,) = [args for word, args in instructions(path) if word == "HEALTHCHECK"]
    argv: list[str] = json.loads(check.split(" CMD ", 1)[1])
    return argv
