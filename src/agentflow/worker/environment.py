"""What an attempt runs with: its environment and its scratch directory.

A task never sees the worker's own token (from a flag, the environment or a file), only the
token the master issued for its attempt; it is told who and where it is (``AGENTFLOW_*``), and
gets a scratch directory for the result it may write and the outcomes of its parents.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentflow.config import WorkerConfig
from agentflow.worker.executor import agent_prompt

__all__ = ["WORKER_SECRETS", "attempt_environment", "task_environment"]

WORKER_SECRETS = ("AGENTFLOW_API_TOKEN", "AGENTFLOW_API_TOKEN_FILE")


def task_environment(
    inherited: Mapping[str, str],
    spec_env: Mapping[str, str],
    frame: Mapping[str, Any],
    config: WorkerConfig,
) -> dict[str, str]:
    """A task's environment: never the worker's own token (from a flag, the environment or a
    file), only the token the master issued for this attempt, and the CA to verify it with."""
    env = {k: v for k, v in inherited.items() if k not in WORKER_SECRETS}
    if frame.get("task_token"):
        env["AGENTFLOW_API_TOKEN"] = str(frame["task_token"])
    if config.tls_ca:
        env["AGENTFLOW_CA"] = str(config.tls_ca)
    env.update(spec_env)  # what the submitter sets explicitly is its own choice
    return env


def attempt_environment(
    frame: Mapping[str, Any], config: WorkerConfig, master_url: str
) -> tuple[dict[str, str], Path]:
    """The environment of the attempt an ``assign`` frame starts, and its new scratch
    directory (the caller removes it when the attempt ends)."""
    spec = frame["spec"]
    task_id, token = str(frame["task_id"]), int(frame["token"])
    env = task_environment(os.environ, spec.get("env") or {}, frame, config)
    env.update(
        AGENTFLOW_URL=master_url,
        AGENTFLOW_TASK_ID=task_id,
        AGENTFLOW_ATTEMPT=str(frame.get("attempt", 1)),
        AGENTFLOW_FENCING_TOKEN=str(token),
        AGENTFLOW_WORKER_ID=config.worker_id,
    )
    if spec.get("agent"):  # the prompt for shell text: "$AGENTFLOW_PROMPT", never {prompt}
        env["AGENTFLOW_PROMPT"] = agent_prompt(spec)
    scratch = Path(tempfile.mkdtemp(prefix=f"agentflow-{task_id}-"))
    env["AGENTFLOW_OUTPUT_FILE"] = str(scratch / "output")
    if "parents" in frame:
        parents = scratch / "parents.json"
        parents.write_text(json.dumps(frame["parents"], indent=1))
        env["AGENTFLOW_PARENTS_FILE"] = str(parents)
    return env, scratch
