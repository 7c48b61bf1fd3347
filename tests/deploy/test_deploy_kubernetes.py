"""deploy/kubernetes/ validates offline against Kubernetes' own schemas (kubernetes-validate,
strict: unknown fields refused) and keeps the cluster's promises: stable peer names, a
headless and a client Service, a disruption budget that keeps quorum, probes on the health
routes, tokens from a Secret, and only settings the master and worker really read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.kube_local import localise_kube
from tests.deploy.local_cluster import clean_environment, form_and_run, start
from tests.deploy.manifests import container_env, unknown_settings
from tests.docs.blocks import ROOT
from tests.e2e.procs import Processes

KUBE_DIR = ROOT / "deploy" / "kubernetes"
K8S_VERSION = "1.37.0"  # a version kubernetes-validate==1.37.0 ships schemas for
SECRET = "agentflow-tokens"


def _documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(KUBE_DIR.glob("*.yaml")):
        out.extend((path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc)
    return out


@pytest.fixture(scope="module")
def by_kind() -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for _path, doc in _documents():
        kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


@pytest.mark.parametrize(
    "path, doc",
    [
        pytest.param(p, d, id=f"{p.name}:{d['kind']}/{d['metadata']['name']}")
        for p, d in _documents()
    ],
)
def test_each_resource_validates_against_the_schemas(path: Path, doc: dict[str, Any]) -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed (pip, [dev] extra)"
    )
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any error


def test_masters_are_a_statefulset_with_stable_peer_names(by_kind: dict[str, Any]) -> None:
    (sts,) = by_kind["StatefulSet"]
    spec = sts["spec"]
    labels = spec["template"]["metadata"]["labels"]
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind["Service"]}
    headless = services[spec["serviceName"]]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    clients = [s for s in services.values() if s.get("clusterIP") != "None"]
    assert clients and all(s["selector"] == labels for s in services.values())
    assert spec["podManagementPolicy"] == "Parallel"  # ready needs a leader needs a majority
    (master,) = spec["template"]["spec"]["containers"]
    env = container_env(master)
    raft_port = env["AGENTFLOW_RAFT_PORT"]
    name, svc = sts["metadata"]["name"], spec["serviceName"]
    expected = {f"{name}-{i}={name}-{i}.{svc}:{raft_port}" for i in range(spec["replicas"])}
    assert set(env["AGENTFLOW_PEERS"].split(",")) == expected
    assert env["AGENTFLOW_NODE_ID"] == "$(POD_NAME)"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["AGENTFLOW_ADVERTISE_URL"] == f"http://$(POD_NAME).{svc}:{env['AGENTFLOW_PORT']}"
    assert env["AGENTFLOW_DATA_DIR"] in {m["mountPath"] for m in master["volumeMounts"]}
    assert not unknown_settings("master", env)


def test_the_disruption_budget_keeps_a_majority(by_kind: dict[str, Any]) -> None:
    (sts,) = by_kind["StatefulSet"]
    (pdb,) = by_kind["PodDisruptionBudget"]
    replicas = sts["spec"]["replicas"]
    assert pdb["spec"]["selector"] == sts["spec"]["selector"]
    budget = pdb["spec"]
    available = (
        budget["minAvailable"]
        if "minAvailable" in budget
        else (replicas - budget["maxUnavailable"])
    )
    assert available >= replicas // 2 + 1


def test_probes_use_the_health_routes(by_kind: dict[str, Any]) -> None:
    (sts,) = by_kind["StatefulSet"]
    (master,) = sts["spec"]["template"]["spec"]["containers"]
    assert master["livenessProbe"]["httpGet"]["path"] == "/health"
    assert master["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    # The probe's timeout outlasts the route's own wait for the leader's commit index.
    from agentflow.api.readiness import READY_WAIT_S

    assert master["readinessProbe"]["timeoutSeconds"] > READY_WAIT_S


def test_tokens_come_from_the_secret(by_kind: dict[str, Any]) -> None:
    for kind in ("StatefulSet", "Deployment"):
        for workload in by_kind[kind]:
            pod = workload["spec"]["template"]["spec"]
            (container,) = pod["containers"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            secret_volumes = {
                v["name"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == SECRET
            }
            for var, value in container_env(container).items():
                if "TOKEN" in var:
                    assert var.endswith("_FILE"), f"{var}: a token in the manifest"
                    assert mounts[str(Path(value).parent)] in secret_volumes


def test_workers_are_a_deployment_of_real_settings(by_kind: dict[str, Any]) -> None:
    (deployment,) = by_kind["Deployment"]
    (worker,) = deployment["spec"]["template"]["spec"]["containers"]
    assert worker["command"] == ["agentflow", "worker"]
    env = container_env(worker)
    (sts,) = by_kind["StatefulSet"]
    name, svc = sts["metadata"]["name"], sts["spec"]["serviceName"]
    assert env["AGENTFLOW_URL"].split(",") == [
        f"http://{name}-{i}.{svc}:6767" for i in range(sts["spec"]["replicas"])
    ]
    assert not unknown_settings("worker", env)


def test_compose_uses_only_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    for spec in compose["services"].values():
        role = spec["command"][1]
        assert not unknown_settings(role, spec["environment"]), spec["command"]


@pytest.mark.slow
def test_the_pods_form_a_cluster_and_run_a_task(
    procs: Processes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The StatefulSet's and the Deployment's pods, run as local processes with only their
    addresses moved (tests/deploy/kube_local.py): the same peer list in every master (each
    skips itself), node ids and advertised URLs from the pod name, tokens from the Secret."""
    for var in clean_environment():
        monkeypatch.delenv(var)
    local, urls = localise_kube([doc for _path, doc in _documents()], tmp_path / "kube")
    masters = [c for c in local.containers if c.argv[1:] == ["master"]]
    workers = [c for c in local.containers if c.argv[1:] == ["worker"]]
    assert {c.env["AGENTFLOW_NODE_ID"] for c in masters} == {c.name for c in masters}
    started = {c.name: start(procs, c) for c in masters}
    form_and_run(procs, started, urls, workers, str(local.secret_files["api-token"]))
