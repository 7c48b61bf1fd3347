"""Red-team findings on role tokens (issue 12 hardening, second pass).

- A ``read-only`` token lists the role tokens (``GET /api/v1/tokens``): the README names the
  tokens routes admin only; ``authorize`` lets a read-only token every ``GET``.
- A long-poll (``GET /api/v1/agents/{id}/inbox?wait_s=``) opened before its token is revoked
  still answers with a message sent after the revocation (up to 300 s later): the HTTP
  counterpart of the agent stream that kept receiving (fixed in b825127).
- A lock acquire waiting (``wait_s``) when its token is revoked is still granted once the lock
  frees: the revoked caller gets the grant, and the lock is held by it for its whole TTL.
"""

from __future__ import annotations

import socket
import threading
import time

import httpx

from tests.e2e.procs import Processes, wait_until

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


def test_a_waiting_acquire_is_not_granted_once_its_token_is_revoked(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--api-token", ADMIN)
    token_id, client = _token(url, "client")
    held = httpx.post(
        url + "/api/v1/locks/L/acquire",
        json={"session": "holder", "ttl_s": 60},
        headers=_as(ADMIN),
        timeout=10,
    )
    assert held.status_code == 200, held.text
    answers: list[httpx.Response] = []

    def wait_for_lock() -> None:
        answers.append(
            httpx.post(
                url + "/api/v1/locks/L/acquire",
                json={"session": "revoked-one", "ttl_s": 60, "wait_s": 20},
                headers=_as(client),
                timeout=30,
            )
        )

    waiter = threading.Thread(target=wait_for_lock)
    waiter.start()
    try:
        wait_until(  # the waiter is queued on the lock (committed) before the revocation
            lambda: httpx.get(url + "/api/v1/locks/L", headers=_as(ADMIN), timeout=10).json()[
                "waiters"
            ],
            what="the acquire queued",
        )
        revoked = httpx.delete(url + f"/api/v1/tokens/{token_id}", headers=_as(ADMIN), timeout=10)
        assert revoked.status_code == 200, revoked.text
        released = httpx.post(
            url + "/api/v1/locks/L/release",
            json={"session": "holder", "token": held.json()["token"]},
            headers=_as(ADMIN),
            timeout=10,
        )
        assert released.status_code == 200, released.text
    finally:
        waiter.join(timeout=40)
    holders = httpx.get(url + "/api/v1/locks/L", headers=_as(ADMIN), timeout=10).json()["holders"]
    assert [h["session"] for h in holders] != ["revoked-one"], (
        "a revoked token's waiting acquire was granted after the revocation",
        answers[0].status_code if answers else None,
    )
    assert not answers or answers[0].status_code != 200, answers[0].text[:200]
