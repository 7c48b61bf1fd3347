"""deploy/compose.yaml as local processes: each service's exact command line and environment,
with only its addresses moved so that every container fits on 127.0.0.1.

What changes, and nothing else:
- ``HOST:PORT`` where HOST is a service name (compose's DNS) or this container itself
  (127.0.0.1, localhost, 0.0.0.0) becomes ``127.0.0.1:FREE``, one free port per (container,
  port): every container listens on its own ports, which on one machine must differ;
- the listening-port settings (:data:`LISTEN_VARS`) become that container's free port, and a
  wildcard bind (0.0.0.0) becomes 127.0.0.1;
- ``/run/secrets/NAME`` (a secret the service mounts) becomes a file holding a fresh token;
- a named volume's mount point becomes a directory of its own for each container.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentflow.testing.ports import free_port

__all__ = ["LISTEN_VARS", "Container", "Localised", "load_compose", "localise"]

LISTEN_VARS = frozenset({"AGENTFLOW_PORT", "AGENTFLOW_RAFT_PORT", "AGENTFLOW_METRICS_PORT"})
SELF_HOSTS = frozenset({"127.0.0.1", "localhost", "0.0.0.0"})
SECRETS_DIR = "/run/secrets/"
_ADDRESS = re.compile(r"(?<![\w.-])([A-Za-z0-9][\w.-]*):(\d+)\b")


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    """One replica of one service, as a local process would run it."""

    name: str
    service: str
    argv: list[str]
    env: dict[str, str]


@dataclass(kw_only=True)
class Localised:
    containers: list[Container]
    secret_files: dict[str, Path]
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    published: dict[str, list[int]] = field(default_factory=dict)  # service -> local ports


def load_compose(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def localise(compose: dict[str, Any], root: Path) -> Localised:
    """Every container of ``compose``, its secrets written and its volumes made under ``root``."""
    secret_files = {}
    for name in compose.get("secrets", {}):
        secret_files[name] = root / "secrets" / name
        secret_files[name].parent.mkdir(parents=True, exist_ok=True)
        secret_files[name].write_text(secrets.token_urlsafe(32) + "\n")
    out = Localised(containers=[], secret_files=secret_files)
    services: dict[str, Any] = compose["services"]
    for service, spec in services.items():
        replicas = int(spec.get("deploy", {}).get("replicas", 1))
        for i in range(1, replicas + 1):
            name = service if replicas == 1 else f"{service}-{i}"
            env = {
                k: _localise(name, k, str(v), spec, root, out, services)
                for k, v in _environment(spec).items()
            }
            out.containers.append(
                Container(name=name, service=service, argv=list(spec["command"]), env=env)
            )
        for mapping in spec.get("ports", []):
            container_port = int(str(mapping).rsplit(":", 1)[1])
            out.published.setdefault(service, []).append(_port(out, service, container_port))
    return out


def _environment(spec: dict[str, Any]) -> dict[str, Any]:
    env = spec.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return dict(env)


def _port(out: Localised, container: str, port: int) -> int:
    return out.ports.setdefault((container, port), free_port())


def _localise(
    name: str,
    var: str,
    value: str,
    spec: dict[str, Any],
    root: Path,
    out: Localised,
    services: dict[str, Any],
) -> str:
    if var in LISTEN_VARS and value.isdigit():
        return str(_port(out, name, int(value)))
    if value in SELF_HOSTS:
        return "127.0.0.1"

    def address(match: re.Match[str]) -> str:
        host, port = match.group(1), int(match.group(2))
        if host in SELF_HOSTS:
            return f"127.0.0.1:{_port(out, name, port)}"
        if host in services:
            return f"127.0.0.1:{_port(out, host, port)}"
        return match.group(0)

    value = _ADDRESS.sub(address, value)
    for secret in spec.get("secrets", []):
        value = value.replace(SECRETS_DIR + secret, str(out.secret_files[secret]))
    for volume in spec.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if value == target or value.startswith(target + "/"):
            local = root / name / source
            local.mkdir(parents=True, exist_ok=True)
            value = str(local) + value[len(target) :]
    return value
