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
    """One replica of one service (or one pod), as a local process would run it."""

    name: str
    service: str
    argv: list[str]
    env: dict[str, str]


@dataclass(kw_only=True)
class Localised:
    """Containers on one machine: their ports, secret files and data directories."""

    root: Path
    containers: list[Container] = field(default_factory=list)
    secret_files: dict[str, Path] = field(default_factory=dict)
    ports: dict[tuple[str, int], int] = field(default_factory=dict)
    published: dict[str, list[int]] = field(default_factory=dict)  # service -> local ports

    def port(self, container: str, port: int) -> int:
        """The free local port that stands for ``container``'s ``port``."""
        return self.ports.setdefault((container, port), free_port())

    def secret(self, name: str) -> Path:
        """A file holding a fresh token for the secret ``name``."""
        if name not in self.secret_files:
            path = self.root / "secrets" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32) + "\n")
            self.secret_files[name] = path
        return self.secret_files[name]

    def directory(self, container: str, volume: str) -> Path:
        path = self.root / container / volume
        path.mkdir(parents=True, exist_ok=True)
        return path

    def addresses(self, value: str, me: str, hosts: dict[str, str]) -> str:
        """``value`` with each ``HOST:PORT`` of a known host (``hosts``: host name -> the
        container it names) or of ``me`` moved to its local port."""

        def move(match: re.Match[str]) -> str:
            host, port = match.group(1), int(match.group(2))
            owner = me if host in SELF_HOSTS else hosts.get(host)
            return match.group(0) if owner is None else f"127.0.0.1:{self.port(owner, port)}"

        return _ADDRESS.sub(move, value)

    def setting(self, var: str, value: str, me: str, hosts: dict[str, str]) -> str:
        """An environment variable's value on this machine (addresses only)."""
        if var in LISTEN_VARS and value.isdigit():
            return str(self.port(me, int(value)))
        if value in SELF_HOSTS:
            return "127.0.0.1"
        return self.addresses(value, me, hosts)


def load_compose(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def localise(compose: dict[str, Any], root: Path) -> Localised:
    """Every container of ``compose``, its secrets written and its volumes made under ``root``."""
    out = Localised(root=root)
    services: dict[str, Any] = compose["services"]
    hosts = {name: name for name in services}  # compose's DNS: a service's name
    for service, spec in services.items():
        replicas = int(spec.get("deploy", {}).get("replicas", 1))
        for i in range(1, replicas + 1):
            name = service if replicas == 1 else f"{service}-{i}"
            env = {
                var: _mounts(out, name, spec, out.setting(var, str(value), name, hosts))
                for var, value in _environment(spec).items()
            }
            argv = list(spec["command"])
            out.containers.append(Container(name=name, service=service, argv=argv, env=env))
        for mapping in spec.get("ports", []):
            container_port = int(str(mapping).rsplit(":", 1)[1])
            out.published.setdefault(service, []).append(out.port(service, container_port))
    return out


def _environment(spec: dict[str, Any]) -> dict[str, Any]:
    env = spec.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return dict(env)


def _mounts(out: Localised, name: str, spec: dict[str, Any], value: str) -> str:
    """``value`` with a mounted secret's path or a named volume's mount point moved."""
    for secret in spec.get("secrets", []):
        value = value.replace(SECRETS_DIR + secret, str(out.secret(secret)))
    for volume in spec.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if value == target or value.startswith(target + "/"):
            value = str(out.directory(name, source)) + value[len(target) :]
    return value
