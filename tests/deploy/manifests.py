"""What the deployment files say, read for tests: env vars by role, the settings they name."""

from __future__ import annotations

from typing import Any

from agentflow.settings import MASTER_SETTINGS, WORKER_SETTINGS

__all__ = ["KNOWN_ENV", "container_env", "unknown_settings"]

# The environment variables each role reads (AGENTFLOW_CONFIG: the --config file).
KNOWN_ENV = {
    "master": {"AGENTFLOW_CONFIG", *(v for s in MASTER_SETTINGS for v in s.envvars)},
    "worker": {"AGENTFLOW_CONFIG", *(v for s in WORKER_SETTINGS for v in s.envvars)},
}


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    """A Kubernetes container's env list as {name: value or valueFrom}."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def unknown_settings(role: str, names: object) -> list[str]:
    """The AGENTFLOW_* names in ``names`` that ``agentflow ROLE`` does not read."""
    return sorted(
        n
        for n in names
        if isinstance(n, str) and n.startswith("AGENTFLOW_") and n not in KNOWN_ENV[role]
    )
