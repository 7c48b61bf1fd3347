"""Red-team findings on role tokens (issue 12 hardening, second pass).

- A ``read-only`` token lists the role tokens (``GET /api/v1/tokens``): the README names the
  tokens routes admin only; ``authorize`` lets a read-only token every ``GET``.
- A long-poll (``GET /api/v1/agents/{id}/inbox?wait_s=``) opened before its token is revoked
  still answers with a message sent after the revocation (up to 300 s later): the HTTP
  counterpart of the agent stream that kept receiving (fixed in b825127).
"""

from __future__ import annotations

import socket
import time

import httpx

from tests.e2e.procs import Processes

ADMIN = "admin-" + "r" * 24
SECRET = "sent-after-revocation"


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _token(url: str, role: str) -> tuple[str, str]:
    made = httpx.post(url + "/api/v1/tokens", json={"role": role}, headers=_as(ADMIN), timeout=10)
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["token"]


def test_a_read_only_token_cannot_list_the_tokens(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--api-token", ADMIN)
    _token(url, "client")
    _, read_only = _token(url, "read-only")
    assert httpx.get(url + "/api/v1/tasks", headers=_as(read_only), timeout=10).status_code == 200
    listed = httpx.get(url + "/api/v1/tokens", headers=_as(read_only), timeout=10)
    # The README: "POST /api/v1/tokens, GET /api/v1/tokens, DELETE ... role tokens (admin only)".
    assert listed.status_code == 403, (listed.status_code, listed.text[:300])


def test_a_long_poll_opened_before_revocation_gets_nothing_sent_after_it(
    procs: Processes,
) -> None:
    _, url = procs.master("m1", None, "--api-token", ADMIN)
    token_id, client = _token(url, "client")
    port = int(url.rsplit(":", 1)[1])
    poll = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        # The long-poll is on the wire (and authorized: the token holds) before the revocation.
        poll.sendall(
            (
                "GET /api/v1/agents/lp/inbox?wait_s=20 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {client}\r\nConnection: close\r\n\r\n"
            ).encode()
        )
        revoked = httpx.delete(url + f"/api/v1/tokens/{token_id}", headers=_as(ADMIN), timeout=10)
        assert revoked.status_code == 200, revoked.text
        assert httpx.get(url + "/api/v1/tasks", headers=_as(client), timeout=10).status_code == 401
        sent = httpx.post(
            url + "/api/v1/messages",
            json={"to": "lp", "type": "secret", "content": SECRET},
            headers=_as(ADMIN),
            timeout=10,
        )
        assert sent.status_code == 201, sent.text
        answer = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            chunk = poll.recv(65536)
            if not chunk:
                break
            answer += chunk
    finally:
        poll.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
    assert SECRET.encode() not in answer, (
        f"a revoked token's long-poll received a message sent after the revocation: {status}"
    )
