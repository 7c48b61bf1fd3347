"""Peer transport: asyncio TCP, length-prefixed msgpack frames, authenticated peers.

Each node dials every peer for its outbound messages (one connection per direction). A
connection opens with the handshake of :mod:`agentflow.cluster.peerwire`: the dialer proves the
cluster token first, then every frame both ways is sealed with a MAC under a key of that
connection, checked before it is decoded. The listener admits only members of the current
configuration (``admit``), refuses a peer of another cluster or protocol version, and tells an
unauthenticated caller nothing about itself; the details go to its own log. With ``tls``
(:mod:`agentflow.cluster.peertls`), every connection is first wrapped in mutual TLS: the
listener requires a certificate signed by the CA, the dialer verifies the listener's against the
CA and the host it dialed; the token handshake and the MACs then run inside. Each peer has a
bounded queue: when it is full, or the peer is unreachable, messages are dropped and Raft is
told (it probes again later), so a slow peer is never buffered without limit. Snapshots travel
in checksummed chunks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import secrets
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentflow.cluster import versions
from agentflow.cluster.clusteruid import UidGate
from agentflow.cluster.codec import encode_message
from agentflow.cluster.peertls import PeerTLS
from agentflow.cluster.peerwire import (
    CLIENT,
    HANDSHAKE_MAX_BYTES,
    LEN,
    MAX_FRAME,
    MAX_OBJECTS,
    SERVER,
    TAG_BYTES,
    VERSION,
    FrameError,
    Hello,
    Sealer,
    Unsealer,
    decode_challenge,
    decode_hello,
    decode_sealed,
    encode_frame,
    message_count,
    session_key,
)
from agentflow.raft import Message

__all__ = ["PeerAddress", "Transport"]

log = logging.getLogger(__name__)

CHUNK = 1 << 20
QUEUE_LIMIT = 4096
HANDSHAKE_TIMEOUT_S = 5.0
MAX_HANDSHAKES = 128  # inbound connections not yet authenticated; more are closed at once
BACKOFF_MAX_S = 2.0
_SEALED_HANDSHAKE_MAX = HANDSHAKE_MAX_BYTES + TAG_BYTES
_FRAME_OBJECTS = MAX_OBJECTS - 1024  # what one msgs frame may fill, leaving room for its map
_FRAME_BYTES = MAX_FRAME - (64 << 10)


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


async def _read_raw(reader: asyncio.StreamReader, limit: int) -> bytes:
    """One length-prefixed frame's bytes; a length over ``limit`` is refused before reading."""
    (length,) = LEN.unpack(await reader.readexactly(LEN.size))
    if length > limit:
        raise FrameError(f"frame of {length} bytes exceeds {limit}")
    return await reader.readexactly(length)


def _message_bytes(msg: Message) -> int:
    """About how many bytes ``msg`` takes on the wire (for splitting batches into frames)."""
    snap = 0 if msg.snapshot is None else len(msg.snapshot.data)
    return 256 + snap + len(msg.context) + sum(len(e.data) + 32 for e in msg.entries)


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
        admit: Callable[[str], bool] | None = None,
        tls: PeerTLS | None = None,
    ) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self._token = token.encode()
        self._host, self._port = host, port
        self._on_message = on_message
        self._on_unreachable = on_unreachable
        self._on_snapshot_sent = on_snapshot_sent or (lambda _peer, _ok: None)
        self._admit = admit or (lambda _peer: True)  # is this id in the configuration?
        self._tls = tls
        self._handshaking = 0
        self.format_floor = 1  # the newest log format applied here: peers must read it
        self.advertise = {**(advertise or {}), **versions.advertised_formats()}
        self.peer_info: dict[str, dict[str, str]] = {}  # what peers advertised (API URL, ...)
        self._peers: dict[str, _Peer] = {}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.Task[None]] = set()
        self.blocked: set[str] = set()  # test hook: peers whose traffic is dropped both ways
        self.uid = UidGate(self.advertise)  # which cluster's data this node holds

    async def start(self) -> None:
        if not self._token:
            raise ValueError("peer traffic needs a cluster token")
        # With TLS, asyncio completes the TLS handshake (within the same deadline) before
        # ``_accept`` runs: a caller without a certificate of the CA never reaches the token
        # handshake, and nothing it sent is read as a frame. TLS handshakes in progress are
        # bounded by that deadline, not counted in MAX_HANDSHAKES. (Upgrading the accepted
        # stream instead would race the client's first TLS bytes into the plaintext reader.)
        self._server = await asyncio.start_server(
            self._accept,
            self._host,
            self._port,
            ssl=None if self._tls is None else self._tls.server,
            ssl_handshake_timeout=None if self._tls is None else HANDSHAKE_TIMEOUT_S,
        )

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
        failing = ""  # the TLS failure last logged, so a streak of them is logged once
        while True:
            try:
                reader, writer = await asyncio.wait_for(
                    self._dial(peer.address), HANDSHAKE_TIMEOUT_S
                )
            except ssl.SSLError as exc:
                if str(exc) != failing:
                    log.warning(
                        "TLS to %s at %s failed (is its certificate signed by --ca and"
                        " naming %s?): %s",
                        peer_id,
                        peer.address,
                        peer.address.host,
                        exc,
                    )
                failing = str(exc)
                self._drop_queued(peer_id, peer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            except (OSError, TimeoutError):
                self._drop_queued(peer_id, peer)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)
                continue
            try:
                sealer = await asyncio.wait_for(
                    self._handshake_out(peer_id, reader, writer), HANDSHAKE_TIMEOUT_S
                )
                peer.connected = True
                backoff, failing = 0.05, ""
                await self._pump(peer, writer, sealer)
            except ssl.SSLError as exc:
                # With TLS 1.3 the listener checks our certificate after our handshake ended:
                # its refusal arrives as an alert on the first read.
                if str(exc) != failing:
                    log.warning(
                        "peer %s at %s refused our TLS link: %s", peer_id, peer.address, exc
                    )
                failing = str(exc)
            except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
                log.info("link to %s (%s) broke: %s", peer_id, peer.address, exc)
            finally:
                peer.connected = False
                writer.close()
            self._drop_queued(peer_id, peer)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _dial(
        self, address: PeerAddress
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection to ``address``: in TLS verifying its certificate names ``address.host``."""
        if self._tls is None:
            return await asyncio.open_connection(address.host, address.port)
        return await asyncio.open_connection(
            address.host,
            address.port,
            ssl=self._tls.client,
            server_hostname=address.host,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT_S,
        )

    def _drop_queued(self, peer_id: str, peer: _Peer) -> None:
        while not peer.queue.empty():
            self._dropped(peer.queue.get_nowait())

    async def _handshake_out(
        self, peer_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Sealer:
        hello = encode_frame(
            {
                "k": "hello",
                "v": VERSION,
                "cluster": self.cluster_id,
                "from": self.node_id,
                "to": peer_id,
                "nonce": secrets.token_bytes(16),
                "info": self.advertise,
            }
        )
        writer.write(hello)
        await writer.drain()
        challenge = await _read_raw(reader, HANDSHAKE_MAX_BYTES)
        version, _nonce = decode_challenge(challenge)
        if (why := versions.peer_version_refusal(version)) is not None:
            raise FrameError(f"peer {peer_id} {why}")
        key = session_key(self._token, hello[LEN.size :], challenge)
        sealer, unsealer = Sealer(key, CLIENT), Unsealer(key, SERVER)
        writer.write(sealer.seal({"k": "auth"}))
        await writer.drain()
        try:
            reply = decode_sealed(
                unsealer.open(await _read_raw(reader, _SEALED_HANDSHAKE_MAX)), max_objects=64
            )
        except (FrameError, asyncio.IncompleteReadError) as exc:
            log.warning(
                "peer %s at %s failed authentication (is its cluster token the same?): %s",
                peer_id,
                writer.get_extra_info("peername"),
                exc or type(exc).__name__,
            )
            raise FrameError("peer failed authentication") from None
        if reply["k"] == "refuse":
            raise FrameError(f"peer {peer_id} refused us: {reply['why']}")
        if reply["k"] != "welcome":
            raise FrameError(f"peer {peer_id} answered {reply['k']} to the handshake")
        self.peer_info[peer_id] = versions.checked_reader(peer_id, reply["info"], self.format_floor)
        return sealer

    async def _pump(self, peer: _Peer, writer: asyncio.StreamWriter, sealer: Sealer) -> None:
        while True:
            batch = [await peer.queue.get()]
            while not peer.queue.empty() and len(batch) < 256:
                batch.append(peer.queue.get_nowait())
            plain = [m for m in batch if m.snapshot is None or len(m.snapshot.data) <= CHUNK]
            for frame in _frames(plain):
                writer.write(sealer.seal({"k": "msgs", "m": frame}))
            for msg in batch:
                if msg.snapshot is not None and len(msg.snapshot.data) > CHUNK:
                    self._write_snapshot(writer, sealer, msg)
            await writer.drain()
            for msg in batch:
                if msg.snapshot is not None:
                    self._on_snapshot_sent(msg.to, True)

    def _write_snapshot(self, writer: asyncio.StreamWriter, sealer: Sealer, msg: Message) -> None:
        assert msg.snapshot is not None
        data = msg.snapshot.data
        digest = hashlib.sha256(data).digest()
        chunks = [data[i : i + CHUNK] for i in range(0, len(data), CHUNK)]
        header = encode_message(msg, with_snapshot_data=False)
        for seq, chunk in enumerate(chunks):
            body = {
                "k": "snap",
                "seq": seq,
                "n": len(chunks),
                "sha": digest,
                "m": header if seq == 0 else None,
                "d": chunk,
            }
            writer.write(sealer.seal(body))

    # -- inbound ----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        where = writer.get_extra_info("peername")
        if self._handshaking >= MAX_HANDSHAKES:
            log.warning("closed a peer connection from %s: too many handshakes at once", where)
            writer.close()
            return
        self._inbound.add(task)
        self._handshaking += 1
        peer_id: str | None = None
        try:
            try:
                authenticated, unsealer = await asyncio.wait_for(
                    self._handshake_in(reader, writer), HANDSHAKE_TIMEOUT_S
                )
            finally:
                self._handshaking -= 1
            peer_id = authenticated
            await self._receive(authenticated, reader, unsealer)
        except asyncio.CancelledError:
            pass  # shutting down
        except (OSError, ValueError, TimeoutError, asyncio.IncompleteReadError) as exc:
            if peer_id is not None:
                log.info("inbound link from %s closed: %s", peer_id, exc)
            else:
                log.warning(
                    "peer connection from %s closed during the handshake: %s",
                    where,
                    exc or type(exc).__name__,
                )
        finally:
            self._inbound.discard(task)
            writer.close()

    async def _handshake_in(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[str, Unsealer]:
        where = writer.get_extra_info("peername")
        raw = await _read_raw(reader, HANDSHAKE_MAX_BYTES)
        hello = decode_hello(raw)
        # Only a random nonce goes back before the caller proved the token.
        challenge = encode_frame({"k": "challenge", "v": VERSION, "nonce": secrets.token_bytes(16)})
        writer.write(challenge)
        await writer.drain()
        key = session_key(self._token, raw, challenge[LEN.size :])
        unsealer, sealer = Unsealer(key, CLIENT), Sealer(key, SERVER)
        try:
            auth = decode_sealed(
                unsealer.open(await _read_raw(reader, _SEALED_HANDSHAKE_MAX)), max_objects=8
            )
        except FrameError as exc:
            log.warning(
                "refused peer %r from %s: wrong cluster token (%s)", hello.from_, where, exc
            )
            raise
        if auth["k"] != "auth":
            raise FrameError(f"expected auth, got {auth['k']}")
        why = self._refusal(hello) or await self.uid.admit(hello.info, hello.from_)
        if why is not None:
            log.warning("refused peer %s from %s: %s", hello.from_, where, why)
            writer.write(sealer.seal({"k": "refuse", "why": why}))
            await writer.drain()
            raise FrameError(why)
        self.peer_info[hello.from_] = hello.info
        writer.write(sealer.seal({"k": "welcome", "info": self.advertise}))
        await writer.drain()
        return hello.from_, unsealer

    def _refusal(self, hello: Hello) -> str | None:
        """Why an authenticated caller may not link to this node, or None."""
        if (why := versions.peer_refusal(hello.version, hello.info, self.format_floor)) is not None:
            return why
        if hello.cluster != self.cluster_id:
            return f"belongs to cluster {hello.cluster!r}, not {self.cluster_id!r}"
        if hello.to != self.node_id:
            return f"dialed node {hello.to!r}, but this is {self.node_id!r}"
        if hello.from_ == self.node_id or not self._admit(hello.from_):
            return f"{hello.from_!r} is not a member of this cluster's configuration"
        return None

    async def _receive(
        self, peer_id: str, reader: asyncio.StreamReader, unsealer: Unsealer
    ) -> None:
        chunks: list[bytes] = []
        header: Message | None = None
        while True:
            frame = decode_sealed(unsealer.open(await _read_raw(reader, MAX_FRAME)))
            if peer_id in self.blocked:
                continue
            if frame["k"] == "msgs":
                for msg in frame["m"]:
                    self._deliver(peer_id, msg)
                continue
            if frame["k"] != "snap":
                raise FrameError(f"unexpected {frame['k']} frame after the handshake")
            if frame["seq"] == 0:
                chunks, header = [], frame["m"]
            if header is None or header.snapshot is None or frame["seq"] != len(chunks):
                raise FrameError("snapshot chunks out of order")
            chunks.append(frame["d"])
            if len(chunks) == frame["n"]:
                data, snap = b"".join(chunks), header.snapshot
                msg, header, chunks = header, None, []
                if hashlib.sha256(data).digest() != frame["sha"]:
                    log.warning("snapshot from %s failed its checksum; dropped", peer_id)
                    continue
                self._deliver(
                    peer_id, dataclasses.replace(msg, snapshot=dataclasses.replace(snap, data=data))
                )

    def _deliver(self, peer_id: str, msg: Message) -> None:
        if msg.from_ != peer_id:
            log.warning("peer %s sent a message claiming to be from %s", peer_id, msg.from_)
            return
        try:
            self._on_message(msg)
        except Exception:
            log.exception("stepping a message from %s failed", peer_id)
            raise


def _frames(messages: list[Message]) -> list[list[Any]]:
    """``messages`` encoded, split into frames within the receiver's object and byte limits."""
    frames: list[list[Any]] = []
    current: list[Any] = []
    objects = size = 0
    for msg in messages:
        cost, nbytes = message_count(msg), _message_bytes(msg)
        if current and (objects + cost > _FRAME_OBJECTS or size + nbytes > _FRAME_BYTES):
            frames.append(current)
            current, objects, size = [], 0, 0
        current.append(encode_message(msg))
        objects, size = objects + cost, size + nbytes
    if current:
        frames.append(current)
    return frames
