"""deploy/kubernetes/ as local processes: the masters' StatefulSet and the workers' Deployment,
each pod's command and env (``$(VAR)`` and the pod-name field expanded, as the kubelet does)
with only addresses moved, as tests/deploy/compose_local.py does for compose: a pod's DNS name
(``POD.SERVICE``) and its own ports become 127.0.0.1 and free ports, a file under a Secret's
mount becomes a file with a fresh token, a volume's mount point a directory of the pod's own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tests.deploy.compose_local import Container, Localised

__all__ = ["localise_kube"]

_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def localise_kube(docs: list[dict[str, Any]], root: Path) -> tuple[Localised, list[str]]:
    """The pods of the StatefulSet and the Deployment in ``docs``, and the masters' API URLs."""
    out = Localised(root=root)
    (sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    service = sts["spec"]["serviceName"]
    masters = [f"{sts['metadata']['name']}-{i}" for i in range(sts["spec"]["replicas"])]
    hosts = {f"{pod}.{service}": pod for pod in masters}
    workers = [
        f"{deployment['metadata']['name']}-{i}" for i in range(deployment["spec"]["replicas"])
    ]
    urls = []
    for workload, pods in ((sts, masters), (deployment, workers)):
        spec = workload["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        for pod in pods:
            env = _pod_env(out, pod, container, spec["volumes"], hosts)
            argv = list(container["command"])
            out.containers.append(
                Container(name=pod, service=workload["metadata"]["name"], argv=argv, env=env)
            )
            if workload is sts:
                (api,) = [p["containerPort"] for p in container["ports"] if p["name"] == "api"]
                urls.append(f"http://127.0.0.1:{out.port(pod, api)}")
    return out, urls


def _pod_env(
    out: Localised,
    pod: str,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    hosts: dict[str, str],
) -> dict[str, str]:
    secret_mounts = {
        m["mountPath"]
        for m in container.get("volumeMounts", [])
        if any(v["name"] == m["name"] and "secret" in v for v in volumes)
    }
    other_mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "valueFrom" in item:
            assert item["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, item
            value = pod
        else:
            value = _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), str(item["value"]))
        value = out.setting(item["name"], value, pod, hosts)
        for mount in secret_mounts:
            if value.startswith(mount + "/"):
                value = str(out.secret(value[len(mount) + 1 :]))
        if value in other_mounts and value not in secret_mounts:
            value = str(out.directory(pod, other_mounts[value]))
        env[item["name"]] = value
    return env
