"""A token revoked while its socket is open stops there: the agent stream neither pushes to it
nor keeps its agent live (found by attacking the change: the check ran only on client frames)."""

from __future__ import annotations

import json

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.procs import Processes, wait_until

ADMIN = "admin-" + "r" * 24


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_a_revoked_token_neither_receives_nor_keeps_its_agent_live(procs: Processes) -> None:
    _, url = procs.master("m1", None, "--api-token", ADMIN)
    made = httpx.post(url + "/api/v1/tokens", json={"role": "client"}, headers=_as(ADMIN))
    assert made.status_code == 201, made.text
    token, token_id = made.json()["token"], made.json()["id"]
    stream = url.replace("http://", "ws://") + "/api/v1/agents/victim/stream"
    with connect(stream, additional_headers={"Authorization": f"Bearer {token}"}) as ws:

        def live() -> bool:
            agent = httpx.get(url + "/api/v1/agents/victim", headers=_as(ADMIN))
            return agent.status_code == 200 and bool(agent.json()["live"])

        wait_until(live, 10, "the stream's agent live")
        revoked = httpx.delete(url + f"/api/v1/tokens/{token_id}", headers=_as(ADMIN))
        assert revoked.status_code == 200, revoked.text
        wait_until(lambda: not live(), 30, "the revoked stream's agent to lapse")
        sent = httpx.post(
            url + "/api/v1/messages",
            json={"to": "victim", "type": "secret", "content": "sent after the revocation"},
            headers=_as(ADMIN),
        )
        assert sent.status_code == 201, sent.text
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # anything still pushed must not be the message sent after revoking
                frame = json.loads(ws.recv(timeout=10))
                assert "sent after the revocation" not in json.dumps(frame), frame
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
