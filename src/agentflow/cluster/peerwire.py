"""Peer frames on the wire: bounded decoding, the handshake's values, and per-frame MACs.

Everything here is pure (no sockets, no clock) so it can be fed random bytes in tests. The
order on receipt is always: the length prefix against its cap, then (after the handshake) the
frame's MAC in constant time, then :func:`check_shape` — a walk over the msgpack bytes that
allocates nothing and refuses excess depth, object counts and declared lengths beyond the bytes
that follow — then ``msgpack.unpackb`` with container limits, then a typed check of every field.
Nothing proportional to a declared size is allocated before all of that passed. Every refusal is
a :class:`FrameError`.

The handshake, on a connection the dialer ("client") opened to the listener ("server")::

    client -> server   hello      {k, v, cluster, from, to, nonce (16 bytes), info}
    server -> client   challenge  {k, v, nonce (16 bytes)}
    client -> server   sealed #0  {k: "auth"}
    server -> client   sealed #0  {k: "welcome", info}  or  {k: "refuse", why}

The session key is an HMAC of both frames' bytes (so both nonces, the ids and the advertised
info) under the cluster token; every later frame is *sealed*: an HMAC-SHA256 over the direction,
its sequence number and its bytes is appended. The server tells an unauthenticated caller
nothing but a random nonce: whether its cluster id, node ids or membership fit is only checked
(and only answered) once its first sealed frame proved the token.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from agentflow.cluster.codec import MAX_ID_CHARS, FrameError, decode_message
from agentflow.raft import Message

__all__ = [
    "CLIENT",
    "HANDSHAKE_MAX_BYTES",
    "LEN",
    "MAX_FRAME",
    "MAX_OBJECTS",
    "SERVER",
    "TAG_BYTES",
    "VERSION",
    "FrameError",
    "Hello",
    "Sealer",
    "Unsealer",
    "check_shape",
    "decode_challenge",
    "decode_hello",
    "decode_sealed",
    "encode_frame",
    "message_count",
    "session_key",
    "unpack_bounded",
]

VERSION = 2
LEN = struct.Struct(">I")
TAG_BYTES = 32
NONCE_BYTES = 16
MAX_FRAME = 16 << 20  # body and tag of one sealed frame (a snapshot chunk fits easily)
MAX_OBJECTS = (
    1 << 19
)  # msgpack objects in one frame: ~65k entries, a full 1 MiB append of tiny ones
MAX_DEPTH = 6  # frame > message list > message > entries > entry
HANDSHAKE_MAX_BYTES = 2048  # hello, challenge, auth, welcome/refuse
MAX_INFO_ITEMS = 8
MAX_INFO_CHARS = 512
CLIENT = b"C"  # direction of the dialer's frames
SERVER = b"S"  # and of the listener's
_KDF_LABEL = b"agentflow peer session v2\0"
_SEQ = struct.Struct(">Q")


def _type_table() -> list[tuple[int, int, int, int] | None]:
    """For each msgpack type byte: (bytes to skip, width of a length field, values per
    declared element: 0 for a scalar or blob, 1 for an array, 2 for a map, embedded count).
    None: a type the peer protocol never sends (extensions, the unused 0xc1)."""
    table: list[tuple[int, int, int, int] | None] = [None] * 256
    for t in (*range(0x00, 0x80), *range(0xE0, 0x100), 0xC0, 0xC2, 0xC3):
        table[t] = (0, 0, 0, 0)  # fixint, nil, false, true
    for t in range(0xA0, 0xC0):
        table[t] = (t & 0x1F, 0, 0, 0)  # fixstr
    for t in range(0x90, 0xA0):
        table[t] = (0, 0, 1, t & 0x0F)  # fixarray
    for t in range(0x80, 0x90):
        table[t] = (0, 0, 2, t & 0x0F)  # fixmap
    sizes = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
    sizes.update({0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8})
    for t, size in sizes.items():
        table[t] = (size, 0, 0, 0)  # floats and ints
    for t, width in {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4}.items():
        table[t] = (0, width, 0, 0)  # bin and str with a length field
    for t, width, per in ((0xDC, 2, 1), (0xDD, 4, 1), (0xDE, 2, 2), (0xDF, 4, 2)):
        table[t] = (0, width, per, 0)
    return table


_TYPES = _type_table()


def check_shape(data: bytes, *, max_depth: int = MAX_DEPTH, max_objects: int = MAX_OBJECTS) -> None:
    """Refuse ``data`` unless it is exactly one msgpack value within the limits.

    Walks the encoding without building anything: the values that containers declare are
    counted against ``max_objects`` when each container opens, and each must fit in the bytes
    that remain, so what ``unpackb`` later allocates is bounded by ``len(data)`` and
    ``max_objects``. Extension types are refused (the peer protocol has none).
    """
    end, pos, declared = len(data), 0, 1
    enclosing: list[int] = []  # values still expected by each open container
    remaining = 1
    while True:
        if remaining == 0:
            if not enclosing:
                break
            remaining = enclosing.pop()
            continue
        remaining -= 1
        if pos >= end:
            raise FrameError("truncated frame")
        kind = _TYPES[data[pos]]
        if kind is None:
            raise FrameError(f"msgpack type 0x{data[pos]:02x} is not used by the peer protocol")
        pos += 1
        skip, width, per, count = kind
        if width:
            count = int.from_bytes(data[pos : pos + width], "big")
            pos += width
            if not per:
                pos += count  # a blob: skip its bytes
                continue
        pos += skip
        count *= per
        if count:
            declared += count
            if declared > max_objects:
                raise FrameError(f"frame holds more than {max_objects} values")
            if count > end - pos:
                raise FrameError("a container declares more values than the frame holds")
            if len(enclosing) >= max_depth:
                raise FrameError(f"frame nests deeper than {max_depth}")
            enclosing.append(remaining)
            remaining = count
    if pos != end:
        raise FrameError("truncated frame" if pos > end else "bytes after the frame's value")


def unpack_bounded(data: bytes, *, max_objects: int = MAX_OBJECTS, max_str: int = 4096) -> Any:
    """``check_shape`` then ``msgpack.unpackb`` with every container and length limit set."""
    check_shape(data, max_objects=max_objects)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_bin_len=len(data),
            max_str_len=max_str,
            max_array_len=max_objects,
            max_map_len=64,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise FrameError(f"undecodable frame: {type(exc).__name__}") from None


def encode_frame(body: dict[str, Any]) -> bytes:
    """An unsealed, length-prefixed frame (only the hello and the challenge)."""
    data: bytes = msgpack.packb(body, use_bin_type=True)
    return LEN.pack(len(data)) + data


# -- the handshake --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    version: int
    cluster: str
    from_: str
    to: str
    nonce: bytes
    info: dict[str, str]


def _fields(body: Any, kind: str, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict) or body.get("k") != kind:
        raise FrameError(f"expected a {kind} frame")
    if set(body) != keys:
        raise FrameError(f"a {kind} frame has the fields {sorted(keys)}")
    return body


def _text(value: Any, what: str, max_chars: int = MAX_ID_CHARS, *, empty: bool = False) -> str:
    if type(value) is not str or len(value) > max_chars or (not value and not empty):
        raise FrameError(f"{what} must be a string of 1..{max_chars} characters")
    return value


def _nonce(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != NONCE_BYTES:
        raise FrameError(f"nonce must be {NONCE_BYTES} bytes")
    return value


def _version(value: Any) -> int:
    if type(value) is not int or not 0 <= value < 1 << 16:
        raise FrameError("version must be a small integer")
    return value


def _info_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_INFO_ITEMS:
        raise FrameError(f"info must be a map of at most {MAX_INFO_ITEMS} items")
    return {
        _text(k, "info key", 64): _text(v, "info value", MAX_INFO_CHARS, empty=True)
        for k, v in value.items()
    }


_HELLO = frozenset({"k", "v", "cluster", "from", "to", "nonce", "info"})


def decode_hello(data: bytes) -> Hello:
    body = _fields(unpack_bounded(data, max_objects=64, max_str=MAX_INFO_CHARS), "hello", _HELLO)
    return Hello(
        version=_version(body["v"]),
        cluster=_text(body["cluster"], "cluster id"),
        from_=_text(body["from"], "from"),
        to=_text(body["to"], "to"),
        nonce=_nonce(body["nonce"]),
        info=_info_map(body["info"]),
    )


def decode_challenge(data: bytes) -> tuple[int, bytes]:
    body = unpack_bounded(data, max_objects=16, max_str=64)
    body = _fields(body, "challenge", frozenset({"k", "v", "nonce"}))
    return _version(body["v"]), _nonce(body["nonce"])


def session_key(token: bytes, hello: bytes, challenge: bytes) -> bytes:
    """HMAC-based key derivation: the cluster token keys an HMAC over both handshake frames
    (both nonces, the ids, the versions and the client's info), one key per connection."""
    transcript = hashlib.sha256(LEN.pack(len(hello)) + hello + challenge).digest()
    return hmac.digest(token, _KDF_LABEL + transcript, "sha256")


# -- sealed frames --------------------------------------------------------------------------


class Sealer:
    """Seals the frames of one direction: ``len | body | HMAC(key, dir | seq | body)``."""

    def __init__(self, key: bytes, direction: bytes) -> None:
        self._key, self._direction, self._seq = key, direction, 0

    def seal(self, body: dict[str, Any]) -> bytes:
        return self.seal_bytes(msgpack.packb(body, use_bin_type=True))

    def seal_bytes(self, data: bytes) -> bytes:
        if len(data) + TAG_BYTES > MAX_FRAME:
            raise FrameError(f"a frame of {len(data)} bytes exceeds {MAX_FRAME}")
        tag = _tag(self._key, self._direction, self._seq, data)
        self._seq += 1
        return LEN.pack(len(data) + TAG_BYTES) + data + tag


class Unsealer:
    """Checks the frames of one direction, in order; any gap, replay or change fails the MAC."""

    def __init__(self, key: bytes, direction: bytes) -> None:
        self._key, self._direction, self._seq = key, direction, 0

    def open(self, sealed: bytes) -> bytes:
        if len(sealed) < TAG_BYTES:
            raise FrameError("frame shorter than its MAC")
        data, tag = sealed[:-TAG_BYTES], sealed[-TAG_BYTES:]
        if not hmac.compare_digest(tag, _tag(self._key, self._direction, self._seq, data)):
            raise FrameError(f"frame #{self._seq} failed its MAC")
        self._seq += 1
        return data


def _tag(key: bytes, direction: bytes, seq: int, data: bytes) -> bytes:
    mac = hmac.new(key, direction + _SEQ.pack(seq), hashlib.sha256)
    mac.update(data)
    return mac.digest()


_SEALED_KEYS = {
    "auth": frozenset({"k"}),
    "welcome": frozenset({"k", "info"}),
    "refuse": frozenset({"k", "why"}),
    "msgs": frozenset({"k", "m"}),
    "snap": frozenset({"k", "seq", "n", "sha", "m", "d"}),
}


def decode_sealed(data: bytes, *, max_objects: int = MAX_OBJECTS) -> dict[str, Any]:
    """An opened frame's body: its kind checked, its fields typed (messages decoded)."""
    body = unpack_bounded(data, max_objects=max_objects)
    kind = body.get("k") if isinstance(body, dict) else None
    if kind not in _SEALED_KEYS:
        raise FrameError(f"unknown frame kind {str(kind)[:32]!r}")
    body = _fields(body, kind, _SEALED_KEYS[kind])
    if kind == "welcome":
        body["info"] = _info_map(body["info"])
    elif kind == "refuse":
        body["why"] = _text(body["why"], "why", MAX_INFO_CHARS, empty=True)
    elif kind == "msgs":
        if not isinstance(body["m"], list):
            raise FrameError("msgs must be a list")
        body["m"] = [decode_message(raw) for raw in body["m"]]
    elif kind == "snap":
        _snap_chunk(body)
    return body


def _snap_chunk(body: dict[str, Any]) -> None:
    n, seq = body["n"], body["seq"]
    if type(n) is not int or type(seq) is not int or not 0 <= seq < n <= 1 << 20:
        raise FrameError("a snapshot chunk needs 0 <= seq < n")
    if type(body["sha"]) is not bytes or len(body["sha"]) != 32:
        raise FrameError("a snapshot chunk's sha must be 32 bytes")
    if type(body["d"]) is not bytes:
        raise FrameError("a snapshot chunk's data must be bytes")
    if (seq == 0) != (body["m"] is not None):
        raise FrameError("only a snapshot's first chunk carries its message")
    if seq == 0:
        body["m"] = decode_message(body["m"], b"")


def message_count(msg: Message) -> int:
    """How many msgpack values ``msg`` takes on the wire (for splitting batches into frames)."""
    snap = msg.snapshot
    conf = None if snap is None else snap.metadata.conf_state
    members = 0 if conf is None else len(conf.voters) + len(conf.learners) + 8
    return 16 + 5 * len(msg.entries) + members
