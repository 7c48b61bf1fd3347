"""Role tokens (issue 12): each role does what it may and is refused the rest with 403,
unknown, revoked and expired tokens get 401, and no secret is stored in plain."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from agentflow import Client
from tests.e2e.procs import BIN, Processes, wait_until

ADMIN = "admin-" + "x" * 24


def _master(procs: Processes, tmp_path: Path) -> tuple[str, Path]:
    token_file = tmp_path / "admin.token"
    token_file.write_text(f"  {ADMIN}\n")  # surrounding space is not part of the token
    data = tmp_path / "m1-data"
    _, url = procs.master("m1", None, "--api-token-file", str(token_file), data_dir=data)
    return url, data


def _cli(*args: str, token_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--api-token-file", str(token_file)] if token_file else []
    return subprocess.run(
        [str(BIN / "agentflow"), *args, *extra],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def _task_count(url: str) -> int:
    tasks = httpx.get(url + "/api/v1/tasks", headers=_as(ADMIN)).json()["tasks"]
    return len(tasks)


def test_each_role_is_refused_what_it_may_not_do(procs: Processes, tmp_path: Path) -> None:
    url, _ = _master(procs, tmp_path)
    admin_file = tmp_path / "admin.token"
    made = _cli(
        "token",
        "create",
        "--role",
        "client",
        "--name",
        "ci",
        "--master-url",
        url,
        token_file=admin_file,
    )
    assert made.returncode == 0, made.stderr
    client = made.stdout.strip()
    assert client.startswith("af_") and "role client" in made.stderr
    with Client(url, token=ADMIN) as admin:
        reader = admin.create_token("read-only")["token"]
        worker = admin.create_token("worker", name="w")["token"]
    task = {"command": "true"}
    tasks, tokens = url + "/api/v1/tasks", url + "/api/v1/tokens"

    # read-only: reads, never writes
    assert httpx.get(tasks, headers=_as(reader)).status_code == 200
    refused = httpx.post(tasks, json=task, headers=_as(reader))
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "forbidden"
    # client: tasks yes; tokens, worker drain and membership no
    assert httpx.post(tasks, json=task, headers=_as(client)).status_code == 201
    assert httpx.get(tokens, headers=_as(client)).status_code == 403
    assert httpx.post(tokens, json={"role": "client"}, headers=_as(client)).status_code == 403
    drain = httpx.patch(url + "/api/v1/workers/w1", json={"state": "draining"}, headers=_as(client))
    assert drain.status_code == 403
    # worker: its session only
    assert httpx.post(tasks, json=task, headers=_as(worker)).status_code == 403
    assert httpx.get(tasks, headers=_as(worker)).status_code == 403
    # unknown: 401
    assert httpx.get(tasks, headers=_as("af_000000000000_nope")).status_code == 401
    assert httpx.get(tasks, headers=_as(client + "0")).status_code == 401

    assert _task_count(url) == 1  # only the client's task was committed
    listed = _cli("token", "list", "--master-url", url, token_file=admin_file)
    assert listed.returncode == 0 and "ci" in listed.stdout and client not in listed.stdout
    client_id = client.split("_")[1]
    ws_url = url.replace("http://", "ws://") + "/api/v1/locks"
    with connect(ws_url, additional_headers=_as(client), open_timeout=10) as socket:
        socket.send(json.dumps({"ref": 1, "op": "acquire", "name": "a", "session": "s"}))
        assert "grant" in json.loads(socket.recv(timeout=10))
        revoked = _cli("token", "revoke", client_id, "--master-url", url, token_file=admin_file)
        assert revoked.returncode == 0, revoked.stderr
        # The socket opened before the revocation carries nothing more.
        socket.send(json.dumps({"ref": 2, "op": "acquire", "name": "b", "session": "s"}))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    assert httpx.get(tasks, headers=_as(client)).status_code == 401
    locks = httpx.get(url + "/api/v1/locks", headers=_as(ADMIN)).json()["locks"]
    assert [lock["name"] for lock in locks] == ["a"]
    denied = _cli("token", "list", "--master-url", url, "--api-token", client)
    assert denied.returncode != 0 and "error:" in denied.stderr
    assert httpx.get(url + "/health").status_code == 200


def test_an_expired_token_is_refused(procs: Processes, tmp_path: Path) -> None:
    url, _ = _master(procs, tmp_path)
    made = _cli(
        "token",
        "create",
        "--role",
        "read-only",
        "--ttl",
        "1s",
        "--master-url",
        url,
        token_file=tmp_path / "admin.token",
    )
    assert made.returncode == 0, made.stderr
    short = made.stdout.strip()
    tasks = url + "/api/v1/tasks"
    first = httpx.get(tasks, headers=_as(short)).status_code
    assert first in (200, 401)  # a busy machine may already be past the second
    wait_until(
        lambda: httpx.get(tasks, headers=_as(short)).status_code == 401,
        timeout_s=15,
        what="the token to expire",
    )
    listed = httpx.get(url + "/api/v1/tokens", headers=_as(ADMIN)).json()["tokens"]
    assert [t["expired"] for t in listed] == [True]


def test_token_secrets_are_not_stored_in_plain(procs: Processes, tmp_path: Path) -> None:
    url, data = _master(procs, tmp_path)
    with Client(url, token=ADMIN) as admin:
        made = [admin.create_token(role) for role in ("client", "worker", "read-only")]
        admin.submit("true")  # one more entry after them: the tokens' entries are flushed
    stored = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    for token in made:
        secret = token["token"].rsplit("_", 1)[1]
        assert token["id"].encode() in stored  # the files looked at hold the tokens
        assert secret.encode() not in stored
        assert token["token"].encode() not in stored
    assert ADMIN.encode() not in stored


def test_an_open_master_makes_no_tokens(procs: Processes) -> None:
    _, url = procs.master("m1")  # no --api-token: open, as before, and it says so
    made = httpx.post(url + "/api/v1/tokens", json={"role": "client"})
    assert made.status_code == 409
    assert "no --api-token" in made.json()["detail"]
    assert httpx.get(url + "/api/v1/tokens").json()["tokens"] == []
