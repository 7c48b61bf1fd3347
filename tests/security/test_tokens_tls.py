"""API TLS (issue 12): a master serving HTTPS with a certificate made here; a worker (with a
worker-role token read from a file) and a client that trust its CA run a task end to end, and
a client that does not is refused by certificate verification."""

from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import httpx

from agentflow import Client
from agentflow.errors import UnavailableError
from agentflow.testing.ports import free_port
from tests.e2e.procs import BIN, Proc, Processes, wait_until
from tests.security.certs import make_certificates

ADMIN = "admin-" + "s" * 24


def _https_master(procs: Processes, tmp_path: Path, cert: Path, key: Path, ca: Path) -> str:
    port = free_port()
    argv = [
        str(BIN / "agentflow-master"),
        "--port",
        str(port),
        "--raft-port",
        str(free_port()),
        "--data-dir",
        str(tmp_path / "data"),
        "--log-level",
        "warning",
        "--api-token",
        ADMIN,
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    ]
    proc = Proc(argv, tmp_path / "master.log")
    procs.procs.append(proc)
    url = f"https://127.0.0.1:{port}"
    trusted = ssl.create_default_context(cafile=str(ca))

    def healthy() -> bool:
        assert proc.alive(), proc.log()
        try:
            return httpx.get(url + "/health", verify=trusted, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 20, "the HTTPS master")
    return url


def test_https_api_end_to_end_and_unverified_clients_refused(
    procs: Processes, tmp_path: Path
) -> None:
    ca, cert, key = make_certificates(tmp_path)
    url = _https_master(procs, tmp_path, cert, key, ca)
    with Client(url, token=ADMIN, ca=str(ca)) as admin:
        worker_token = admin.create_token("worker", name="w1")["token"]
    token_file = tmp_path / "worker.token"
    token_file.write_text(worker_token + "\n")
    procs.worker("w1", url, "--api-token-file", str(token_file), "--ca", str(ca))

    # The task talks back to the master over HTTPS with its own token and the worker's CA.
    script = (
        "from agentflow import Client\n"
        "with Client() as c:\n"
        "    c.request('POST', '/api/v1/messages', json={'to': 'x', 'type': 'hi'})\n"
    )
    submit = subprocess.run(
        [
            str(BIN / "agentflow"),
            "submit",
            "--master-url",
            url,
            "--api-token",
            ADMIN,
            "--ca",
            str(ca),
            "--wait",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert submit.returncode == 0, submit.stdout + submit.stderr
    with Client(url, token=ADMIN, ca=str(ca)) as admin:
        (task,) = admin.list()
        assert task.ok
        (message,) = admin.message_history()
        assert message["from"] == task.id

    # Without the CA, neither the SDK nor the CLI talks to it.
    with Client(url, token=ADMIN, retry_for_s=0.5) as blind:
        try:
            blind.list()
            raise AssertionError("a client without --ca was served")
        except UnavailableError as exc:
            assert "CERTIFICATE_VERIFY_FAILED" in exc.detail
    refused = subprocess.run(
        [str(BIN / "agentflow"), "tasks", "--master-url", url, "--api-token", ADMIN],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stderr
