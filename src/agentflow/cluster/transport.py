"""Peer transport: asyncio TCP, length-prefixed msgpack frames, authenticated peers.

Each node dials every peer for its outbound messages (one connection per direction). A
connection opens with an HMAC challenge on the shared cluster token, both ways, compared in
constant time; a peer with the wrong token, another cluster id or the wrong node id is refused
and logged. Every frame carries the protocol version. Each peer has a bounded queue: when it is
full, or the peer is unreachable, messages are dropped and Raft is told (it probes again
later), so a slow peer is never buffered without limit. Snapshots travel in checksummed chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack

from agentflow.cluster.codec import decode_message, encode_message
from agentflow.raft import Message

__all__ = ["PeerAddress", "Transport"]

log = logging.getLogger(__name__)

VERSION = 1
MAX_FRAME = 16 << 20
CHUNK = 1 << 20
QUEUE_LIMIT = 4096
HANDSHAKE_TIMEOUT_S = 5.0
BACKOFF_MAX_S = 2.0
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class PeerAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> PeerAddress:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"peer address must be host:port, got {text!r}")
        return cls(host or "127.0.0.1", int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


async def _read_frame(reader: asyncio.StreamReader) -> Any:
    header = await reader.readexactly(_LEN.size)
    (length,) = _LEN.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes exceeds {MAX_FRAME}")
    return msgpack.unpackb(await reader.readexactly(length), raw=False, strict_map_key=False)


def _frame(body: Any) -> bytes:
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return _LEN.pack(len(data)) + data


def _mac(token: bytes, *parts: str | bytes) -> bytes:
    h = hmac.new(token, digestmod=hashlib.sha256)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.digest()


@dataclass
class _Peer:
    address: PeerAddress
    queue: asyncio.Queue[Message] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    task: asyncio.Task[None] | None = None
    connected: bool = False


class Transport:
    """Sends Raft messages to peers and hands received ones to ``on_message``."""

    def __init__(
        self,
        *,
        node_id: str,
        cluster_id: str,
        token: str,
        host: str,
        port: int,
        on_message: Callable[[Message], None],
        on_unreachable: Callable[[str], None],
        on_snapshot_sent: Callable[[str, bool], None] | None = None,
        advertise: dict[str, str] | None = None,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self._token = token.encode()
        self._host, self._port = host, port
        self._on_message = on_message
        self._on_unreachable = on_unreachable
        self._on_snapshot_sent = on_snapshot_sent or (lambda _peer, _ok: None)
        self.advertise = advertise or {}
        self.peer_info: dict[str, dict[str, str]] = {}  # what peers advertised (API URL, ...)
        self._peers: dict[str, _Peer] = {}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.Task[None]] = set()
        self.blocked: set[str] = set()  # test hook: peers whose traffic is dropped both ways

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self._host, self._port)

    async def close(self) -> None:
        for peer in self._peers.values():
            if peer.task is not None:
                peer.task.cancel()
        if self._server is not None:
            self._server.close()
        for task in list(self._inbound):
            task.cancel()
        tasks = [p.task for p in self._peers.values() if p.task is not None]
        await asyncio.gather(*tasks, *self._inbound, return_exceptions=True)

    # -- peers ------------------------------------------------------------------------------

    def set_peer(self, peer_id: str, address: PeerAddress) -> None:
        old = self._peers.get(peer_id)
        if old is not None and old.address == address:
            return
        if old is not None and old.task is not None:
            old.task.cancel()
        peer = _Peer(address)
        peer.task = asyncio.get_running_loop().create_task(
            self._sender(peer_id, peer), name=f"raft-send-{peer_id}"
        )
        self._peers[peer_id] = peer

    def remove_peer(self, peer_id: str) -> None:
        peer = self._peers.pop(peer_id, None)
        if peer is not None and peer.task is not None:
            peer.task.cancel()

    def peers(self) -> dict[str, PeerAddress]:
        return {pid: p.address for pid, p in self._peers.items()}

    def connected(self, peer_id: str) -> bool:
        peer = self._peers.get(peer_id)
        return peer is not None and peer.connected

    def send(self, msg: Message) -> None:
        peer = self._peers.get(msg.to)
        if peer is None or not peer.connected or msg.to in self.blocked:
            # Raft resends what matters once the link is up; queueing for a link that is down
            # would only deliver stale messages later.
            self._dropped(msg)
            return
        try:
            peer.queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._dropped(msg)

    def _dropped(self, msg: Message) -> None:
        self._on_unreachable(msg.to)
        if msg.snapshot is not None:
            self._on_snapshot_sent(msg.to, False)

    # -- outbound ---------------------------------------------------------------------------

    async def _sender(self, peer_id: str, peer: _Peer) -> None:
        backoff = 0.05
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(peer.address.host, peer.address.port),
                    HANDSHAKE_TIMEOUT_S,
                )
            except (OSError, TimeoutError):
                self._drop_queued(peer_id, peer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            try:
                await self._handshake_out(peer_id, reader, writer)
                peer.connected = True
                backoff = 0.05
                await self._pump(peer, writer)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                log.info("link to %s (%s) broke: %s", peer_id, peer.address, exc)
            finally:
                peer.connected = False
                writer.close()
            self._drop_queued(peer_id, peer)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _drop_queued(self, peer_id: str, peer: _Peer) -> None:
        while not peer.queue.empty():
            self._dropped(peer.queue.get_nowait())

    async def _handshake_out(
        self, peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonce = secrets.token_bytes(16)
        writer.write(
            _frame(
                {
                    "k": "hello",
                    "v": VERSION,
                    "cluster": self.cluster_id,
                    "from": self.node_id,
                    "to": peer_id,
                    "nonce": nonce,
                    "info": self.advertise,
                }
            )
        )
        await writer.drain()
        reply = await asyncio.wait_for(_read_frame(reader), HANDSHAKE_TIMEOUT_S)
        if reply.get("k") != "challenge":
            raise ValueError(f"peer {peer_id} refused us: {reply.get('why')}")
        expected = _mac(self._token, "server", nonce, self.cluster_id, peer_id)
        if not hmac.compare_digest(expected, bytes(reply.get("mac", b""))):
            log.warning(
                "peer %s at %s failed authentication", peer_id, writer.get_extra_info("peername")
            )
            raise ValueError("peer failed authentication")
        self.peer_info[peer_id] = dict(reply.get("info") or {})
        mac = _mac(self._token, "client", bytes(reply["nonce"]), self.cluster_id, self.node_id)
        writer.write(_frame({"k": "auth", "mac": mac}))
        await writer.drain()

    async def _pump(self, peer: _Peer, writer: asyncio.StreamWriter) -> None:
        while True:
            batch = [await peer.queue.get()]
            while not peer.queue.empty() and len(batch) < 256:
                batch.append(peer.queue.get_nowait())
            plain = [m for m in batch if m.snapshot is None or len(m.snapshot.data) <= CHUNK]
            if plain:
                writer.write(
                    _frame(
                        {
                            "k": "msgs",
                            "v": VERSION,
                            "c": self.cluster_id,
                            "f": self.node_id,
                            "m": [encode_message(m) for m in plain],
                        }
                    )
                )
            for msg in batch:
                if msg.snapshot is not None and len(msg.snapshot.data) > CHUNK:
                    self._write_snapshot(writer, msg)
            await writer.drain()
            for msg in batch:
                if msg.snapshot is not None:
                    self._on_snapshot_sent(msg.to, True)

    def _write_snapshot(self, writer: asyncio.StreamWriter, msg: Message) -> None:
        assert msg.snapshot is not None
        data = msg.snapshot.data
        digest = hashlib.sha256(data).digest()
        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        header = encode_message(msg, with_snapshot_data=False)
        for seq, chunk in enumerate(chunks):
            writer.write(
                _frame(
                    {
                        "k": "snap",
                        "v": VERSION,
                        "c": self.cluster_id,
                        "f": self.node_id,
                        "seq": seq,
                        "n": len(chunks),
                        "sha": digest,
                        "m": header if seq == 0 else None,
                        "d": chunk,
                    }
                )
            )

    # -- inbound ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inbound.add(task)
        peer_id = "?"
        authenticated = False
        try:
            peer_id = await self._handshake_in(reader, writer)
            authenticated = True
            await self._receive(peer_id, reader)
        except asyncio.CancelledError:
            pass  # shutting down
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError, KeyError) as exc:
            if authenticated:
                log.info("inbound link from %s closed: %s", peer_id, exc)
            else:  # e.g. the dialer found our proof wrong: its token differs from ours
                log.warning(
                    "peer at %s hung up during authentication: %s",
                    writer.get_extra_info("peername"),
                    exc or type(exc).__name__,
                )
        finally:
            self._inbound.discard(task)
            writer.close()

    async def _handshake_in(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> str:
        hello = await asyncio.wait_for(_read_frame(reader), HANDSHAKE_TIMEOUT_S)
        where = writer.get_extra_info("peername")
        why = None
        if hello.get("k") != "hello" or hello.get("v") != VERSION:
            why = f"unsupported protocol version {hello.get('v')}"
        elif hello.get("cluster") != self.cluster_id:
            why = f"belongs to cluster {hello.get('cluster')!r}, not {self.cluster_id!r}"
        elif hello.get("to") != self.node_id:
            why = f"dialed node {hello.get('to')!r}, but this is {self.node_id!r}"
        if why is not None:
            log.warning("refused peer %s from %s: %s", hello.get("from"), where, why)
            writer.write(_frame({"k": "refuse", "why": why}))
            await writer.drain()
            raise ValueError(why)
        peer_id = str(hello["from"])
        nonce = secrets.token_bytes(16)
        mac = _mac(self._token, "server", bytes(hello["nonce"]), self.cluster_id, self.node_id)
        writer.write(_frame({"k": "challenge", "nonce": nonce, "mac": mac, "info": self.advertise}))
        await writer.drain()
        auth = await asyncio.wait_for(_read_frame(reader), HANDSHAKE_TIMEOUT_S)
        expected = _mac(self._token, "client", nonce, self.cluster_id, peer_id)
        if not hmac.compare_digest(expected, bytes(auth.get("mac", b""))):
            log.warning("refused peer %s from %s: wrong cluster token", peer_id, where)
            raise ValueError("wrong cluster token")
        self.peer_info[peer_id] = dict(hello.get("info") or {})
        return peer_id

    async def _receive(self, peer_id: str, reader: asyncio.StreamReader) -> None:
        assembling: list[bytes] = []
        header: Any = None
        while True:
            frame = await _read_frame(reader)
            if (frame.get("v"), frame.get("c"), frame.get("f")) != (
                VERSION,
                self.cluster_id,
                peer_id,
            ):
                raise ValueError(
                    f"frame from {peer_id} names version {frame.get('v')}, cluster "
                    f"{frame.get('c')!r}, sender {frame.get('f')!r}: dropping the link"
                )
            if peer_id in self.blocked:
                continue
            kind = frame.get("k")
            if kind == "msgs":
                for raw in frame["m"]:
                    self._deliver(peer_id, decode_message(raw))
            elif kind == "snap":
                if frame["seq"] == 0:
                    assembling, header = [], frame["m"]
                assembling.append(bytes(frame["d"]))
                if len(assembling) == frame["n"] and header is not None:
                    data = b"".join(assembling)
                    assembling, raw_header, header = [], header, None
                    if hashlib.sha256(data).digest() != bytes(frame["sha"]):
                        log.warning("snapshot from %s failed its checksum; dropped", peer_id)
                        continue
                    self._deliver(peer_id, decode_message(raw_header, data))

    def _deliver(self, peer_id: str, msg: Message) -> None:
        if msg.from_ != peer_id:
            log.warning("peer %s sent a message claiming to be from %s", peer_id, msg.from_)
            return
        try:
            self._on_message(msg)
        except Exception:
            log.exception("stepping a message from %s failed", peer_id)
            raise
