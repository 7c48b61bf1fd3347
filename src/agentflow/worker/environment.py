"""What an attempt runs with: its environment and its files.

A task never sees the worker's own token (from a flag, the environment or a file), only the
token the master issued for its attempt; it is told who and where it is (``AGENTFLOW_*``), and
gets a file for the result it may write and one with the outcomes of its parents. Both live in
the worker's own scratch directory, named after the attempt: a directory made and removed per
attempt cost a fifth of a busy worker's time (``rmdir`` on an overlay file system).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentflow.config import WorkerConfig
from agentflow.worker.executor import agent_prompt

MAX_RESULT_BYTES = 64 * 1024  # of what an attempt writes to $AGENTFLOW_OUTPUT_FILE

__all__ = [
    "WORKER_SECRETS",
    "AttemptFiles",
    "attempt_environment",
    "inherited_environment",
    "task_environment",
]

WORKER_SECRETS = ("AGENTFLOW_API_TOKEN", "AGENTFLOW_API_TOKEN_FILE")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")  # a task id as part of a file name


def task_environment(
    inherited: Mapping[str, str],
    spec_env: Mapping[str, str],
    frame: Mapping[str, Any],
    config: WorkerConfig,
) -> dict[str, str]:
    """A task's environment: never the worker's own token (from a flag, the environment or a
    file), only the token the master issued for this attempt, and the CA to verify it with."""
    env = dict(inherited)
    for secret in WORKER_SECRETS:
        env.pop(secret, None)
    if frame.get("task_token"):
        env["AGENTFLOW_API_TOKEN"] = str(frame["task_token"])
    if config.tls_ca:
        env["AGENTFLOW_CA"] = str(config.tls_ca)
    env.update(spec_env)  # what the submitter sets explicitly is its own choice
    return env


@dataclass(frozen=True, slots=True)
class AttemptFiles:
    """The files of one attempt in the worker's scratch directory."""

    output: Path  # $AGENTFLOW_OUTPUT_FILE: what the attempt writes there becomes its result
    parents: Path  # $AGENTFLOW_PARENTS_FILE, for a workflow task
    has_parents: bool = False  # the parents file was written

    def remove(self) -> None:
        for path in (self.output, self.parents) if self.has_parents else (self.output,):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def collect(self, *, read: bool) -> str | None:
        """What the attempt wrote to $AGENTFLOW_OUTPUT_FILE (bounded) if ``read``; the files
        go either way."""
        try:
            if not read:
                return None
            with open(self.output, "rb") as fh:
                return fh.read(MAX_RESULT_BYTES).decode("utf-8", "replace")
        except OSError:
            return None
        finally:
            self.remove()


def inherited_environment() -> dict[str, str]:
    """What every attempt inherits of the worker's environment: all of it but its secrets.
    Read once (the worker never changes its own environment): copying ``os.environ`` name
    by name for each attempt was a tenth of a busy worker's time."""
    return {k: v for k, v in os.environ.items() if k not in WORKER_SECRETS}


def attempt_environment(
    frame: Mapping[str, Any],
    config: WorkerConfig,
    master_url: str,
    scratch: Path,
    inherited: Mapping[str, str],
) -> tuple[dict[str, str], AttemptFiles]:
    """The environment of the attempt an ``assign`` frame starts, and its files in
    ``scratch`` (the caller removes them when the attempt ends). ``inherited`` is what it
    gets of the worker's environment: :func:`inherited_environment` for a program; nothing
    for a Python call, whose runner started with that environment already."""
    spec = frame["spec"]
    task_id, token = str(frame["task_id"]), int(frame["token"])
    env = task_environment(inherited, spec.get("env") or {}, frame, config)
    env.update(
        AGENTFLOW_URL=master_url,
        AGENTFLOW_TASK_ID=task_id,
        AGENTFLOW_ATTEMPT=str(frame.get("attempt", 1)),
        AGENTFLOW_FENCING_TOKEN=str(token),
        AGENTFLOW_WORKER_ID=config.worker_id,
    )
    if spec.get("agent"):  # the prompt for shell text: "$AGENTFLOW_PROMPT", never {prompt}
        env["AGENTFLOW_PROMPT"] = agent_prompt(spec)
    # One entry may assign several tasks (one token), but a task one attempt per token.
    stem = f"{_SAFE.sub('_', task_id)}-{token}"
    files = AttemptFiles(
        output=scratch / f"{stem}.output",
        parents=scratch / f"{stem}.parents",
        has_parents="parents" in frame,
    )
    env["AGENTFLOW_OUTPUT_FILE"] = str(files.output)
    if files.has_parents:
        files.parents.write_text(json.dumps(frame["parents"], indent=1))
        env["AGENTFLOW_PARENTS_FILE"] = str(files.parents)
    return env, files
