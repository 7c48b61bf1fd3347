"""Finding 4: a web page could run commands on a master without a token (cross-site requests
and DNS rebinding). A browser sends what a page asks, to 127.0.0.1 too: a ``text/plain`` POST
(no preflight), a foreign ``Origin``, a ``Host`` naming the attacker's domain. Each is refused
before anything is read or committed; clients that are not browsers (curl, the SDK) pass."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from tests.e2e.procs import BIN, Processes
from tests.security._http import http, master, task_count

__all__ = ["master"]

pytestmark = pytest.mark.slow  # real master processes

EVIL = "http://evil.example"
TASK = {"title": "Test Task", "description": "echo Hello"}


def test_text_plain_post_from_a_foreign_page_is_refused(master: str) -> None:
    before = task_count(master)
    answer = http.post(
        master + "/api/v1/tasks",
        content=json.dumps(TASK),
        headers={"Content-Type": "text/plain", "Origin": EVIL},
    )
    assert answer.status_code in (403, 415)
    assert answer.headers["content-type"] == "application/problem+json"
    assert task_count(master) == before


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_body_that_is_not_declared_json_is_refused(master: str, content_type: str) -> None:
    before = task_count(master)
    answer = http.post(
        master + "/api/v1/tasks", content=json.dumps(TASK), headers={"Content-Type": content_type}
    )
    assert answer.status_code == 415
    assert answer.json()["code"] == "unsupported-media-type"
    assert task_count(master) == before


def test_json_post_with_a_foreign_origin_is_refused(master: str) -> None:
    before = task_count(master)
    answer = http.post(master + "/api/v1/tasks", json=TASK, headers={"Origin": EVIL})
    assert answer.status_code == 403
    assert answer.json()["code"] == "foreign-origin"
    assert task_count(master) == before
    answer = http.get(master + "/api/v1/tasks", headers={"Origin": "null"})
    assert answer.status_code == 403


@pytest.mark.parametrize("host", ["evil.example", "evil.example:6767", "localhost.evil.example"])
def test_a_foreign_host_is_not_served(master: str, host: str) -> None:
    before = task_count(master)
    answer = http.post(master + "/api/v1/tasks", json=TASK, headers={"Host": host})
    assert answer.status_code == 421
    assert answer.json()["code"] == "unknown-host"
    assert http.get(master + "/api/v1/tasks", headers={"Host": host}).status_code == 421
    assert task_count(master) == before


def test_loopback_names_and_the_own_origin_are_served(master: str) -> None:
    port = httpx.URL(master).port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "127.0.0.2", "localhost"):
        assert http.get(master + "/api/v1/tasks", headers={"Host": host}).status_code == 200
    same = {"Origin": f"http://127.0.0.1:{port}"}
    answer = http.post(master + "/api/v1/tasks", json=TASK, headers=same)
    assert answer.status_code == 201, answer.text


def test_the_seed_curl_request_still_works(master: str) -> None:
    curl = shutil.which("curl")
    if curl is None:  # the same request, byte for byte as curl sends it
        answer = http.post(
            master + "/api/v1/tasks",
            content=b'{"title":"Test Task","description":"echo Hello"}',
            headers={"Content-Type": "application/json", "User-Agent": "curl/8"},
        )
        assert answer.status_code == 201, answer.text
        return
    done = subprocess.run(
        [
            curl,
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            '{"title":"Test Task","description":"echo Hello"}',
            master + "/api/v1/tasks",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.stdout == "201"


def test_an_empty_post_without_content_type_passes_but_a_form_does_not(master: str) -> None:
    task = http.post(master + "/api/v1/tasks", json={"command": "sleep 30"}).json()
    cancel = f"{master}/api/v1/tasks/{task['id']}/cancel"
    form = http.post(cancel, headers={"Content-Type": "text/plain"})
    assert form.status_code == 415
    assert http.get(f"{master}/api/v1/tasks/{task['id']}").json()["status"] != "cancelled"
    assert http.post(cancel).status_code == 200


def test_a_websocket_from_a_foreign_page_is_refused(master: str) -> None:
    ws_url = master.replace("http://", "ws://") + "/api/v1/agents/page/stream"
    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url, origin=Origin(EVIL), open_timeout=5).close()
    assert refused.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        connect(ws_url, additional_headers={"Host": "evil.example"}, open_timeout=5).close()
    with connect(ws_url, open_timeout=5) as ws:  # no Origin: not a browser
        ws.send(json.dumps({"ack": 0}))


def test_public_hosts_and_allowed_origins_are_configurable(procs: Processes) -> None:
    _, url = procs.master(
        "m9", None, "--public-host", "agentflow.internal", "--allowed-origins", "https://ui.example"
    )
    assert http.get(url + "/api/v1/tasks", headers={"Host": "agentflow.internal"}).is_success
    answer = http.post(url + "/api/v1/tasks", json=TASK, headers={"Origin": "https://ui.example"})
    assert answer.status_code == 201
    assert http.get(url + "/api/v1/tasks", headers={"Host": "other.example"}).status_code == 421
    assert http.post(url + "/api/v1/tasks", json=TASK, headers={"Origin": EVIL}).status_code == 403


ATTACK = """
import os, urllib.request, urllib.error
def status(headers):
    request = urllib.request.Request(os.environ["AGENTFLOW_URL"] + "/api/v1/tasks",
        data=b'{"command": "echo pwned"}', headers=headers, method="POST")
    try:
        return urllib.request.urlopen(request, timeout=10).status
    except urllib.error.HTTPError as exc:
        return exc.code
print("ATTACK", status({"Content-Type": "text/plain", "Origin": "http://evil.example"}),
      status({"Content-Type": "application/json", "Host": "evil.example"}))
"""


def test_the_embedded_master_of_agentflow_run_is_guarded(tmp_path: Path) -> None:
    """A task of ``agentflow run`` plays the page: it attacks the embedded master it runs on."""
    spec = tmp_path / "tasks.json"
    spec.write_text(json.dumps([{"title": "page", "args": [sys.executable, "-c", ATTACK]}]))
    done = subprocess.run(
        [str(BIN / "agentflow"), "run", str(spec), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"COLUMNS": "200", "PATH": str(BIN) + ":/usr/bin:/bin"},
    )
    assert "ATTACK 403 421" in done.stdout + done.stderr, done.stdout + done.stderr


def test_a_follower_guards_then_forwards_to_the_leader(procs: Processes) -> None:
    """Forwarded writes reach the leader with its own Host and no Origin (checked here)."""
    cluster = procs.cluster(3)
    leader = cluster.leader()
    follower = next(name for name in cluster.masters if name != leader)
    url = cluster.url(follower)
    port = httpx.URL(url).port
    own = {"Origin": f"http://127.0.0.1:{port}"}
    answer = http.post(url + "/api/v1/tasks", json=TASK, headers=own)
    assert answer.status_code == 201, answer.text
    assert http.post(url + "/api/v1/tasks", json=TASK, headers={"Origin": EVIL}).status_code == 403
    plain = {"Content-Type": "text/plain"}
    assert http.post(url + "/api/v1/tasks", content=b"{}", headers=plain).status_code == 415
    assert task_count(cluster.url(leader)) == 1
