"""What an attacker of the peer port sends, for the tests of ``test_peer_*``.

``old_protocol_inject`` speaks the handshake of before issue 12 (protocol 1, a built-in token,
frames without a MAC); it only runs when a test finds a peer port that should not be there, to
show what that port used to let through. ``PeerClient`` speaks today's handshake.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from pathlib import Path
from typing import Any

import httpx
import msgpack

from agentflow.cluster import peerwire, versions
from agentflow.cluster.codec import encode_message
from agentflow.raft import Entry, Message, MessageType
from agentflow.state import encode_command
from agentflow.state.commands import NewTask, SubmitTasks

OLD_DEFAULT_TOKEN = b"agentflow-loopback-default"


def injected_append(
    to: str, term: int, last_index: int, command: str, *, from_: str = "intruder"
) -> Message:
    """An AppendEntries at a higher term whose one entry submits a task running ``command``."""
    task = NewTask(id="t-injected", title="injected", description="", spec={"command": command})
    entry = Entry(
        term=term + 10,
        index=last_index + 1,
        data=encode_command(SubmitTasks(now_ms=1, tasks=[task])),
    )
    return Message(
        type=MessageType.APPEND,
        from_=from_,
        to=to,
        term=term + 10,
        log_term=term,
        index=last_index,
        entries=(entry,),
        commit=last_index + 1,
    )


def cluster_view(url: str, token: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url + "/api/v1/cluster", headers=headers, timeout=5)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


def task_ids(url: str, token: str | None = None) -> set[str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(url + "/api/v1/tasks", headers=headers, timeout=10)
    response.raise_for_status()
    return {t["id"] for t in response.json()["tasks"]}


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set (VmHWM), so a spike that was freed still shows."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _old_frame(body: Any) -> bytes:
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return struct.pack(">I", len(data)) + data


def _old_mac(token: bytes, *parts: str | bytes) -> bytes:
    h = hmac.new(token, digestmod=hashlib.sha256)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.digest()


def _recv_frame(sock: socket.socket) -> bytes:
    header = sock.recv(4, socket.MSG_WAITALL)
    if len(header) < 4:
        raise ConnectionError("closed")
    (length,) = struct.unpack(">I", header)
    return sock.recv(length, socket.MSG_WAITALL)


def old_protocol_inject(port: int, to: str, token: bytes, msg: Message) -> None:
    """Protocol 1 as a non-member: prove ``token`` and send ``msg`` in an unsealed frame."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        hello = {"k": "hello", "v": 1, "cluster": "agentflow", "from": msg.from_, "to": to}
        sock.sendall(_old_frame(hello | {"nonce": b"n" * 16, "info": {}}))
        challenge = msgpack.unpackb(_recv_frame(sock), raw=False)
        proof = _old_mac(token, "client", bytes(challenge["nonce"]), "agentflow", msg.from_)
        sock.sendall(_old_frame({"k": "auth", "mac": proof}))
        frame = {"k": "msgs", "v": 1, "c": "agentflow", "f": msg.from_, "m": [encode_message(msg)]}
        sock.sendall(_old_frame(frame))  # the master reads it before it sees the close


def refused(sock: socket.socket, timeout_s: float = 10.0) -> bool:
    """Whether the other side closes ``sock`` (reads EOF or a reset), waiting at most that long."""
    sock.settimeout(timeout_s)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


class PeerClient:
    """Today's handshake, driven by hand: hello, challenge, then sealed frames."""

    def __init__(
        self, port: int, *, from_: str, to: str, token: bytes, cluster: str = "agentflow"
    ) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        hello = {"k": "hello", "v": peerwire.VERSION, "cluster": cluster, "from": from_, "to": to}
        info = versions.advertised_formats()  # a member of today's release
        raw_hello = peerwire.encode_frame(hello | {"nonce": b"\1" * 16, "info": info})
        self.sock.sendall(raw_hello)
        challenge = _recv_frame(self.sock)
        self.challenge = challenge
        key = peerwire.session_key(token, raw_hello[4:], challenge)
        self.sealer = peerwire.Sealer(key, peerwire.CLIENT)
        self._unsealer = peerwire.Unsealer(key, peerwire.SERVER)

    def authenticate(self) -> dict[str, Any]:
        """Send the sealed auth frame; the server's answer (welcome or refuse), decoded."""
        self.sock.sendall(self.sealer.seal({"k": "auth"}))
        return peerwire.decode_sealed(self._unsealer.open(_recv_frame(self.sock)), max_objects=64)

    def send_messages(self, *msgs: Message) -> None:
        self.sock.sendall(self.sealer.seal({"k": "msgs", "m": [encode_message(m) for m in msgs]}))

    def close(self) -> None:
        self.sock.close()
