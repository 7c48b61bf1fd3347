"""Raft messages on the wire: msgpack lists, field by field; nothing is ever unpickled.

Decoding checks the type and range of every field (ids are short strings, terms and indexes
fit the 63 bits SQLite stores, payloads are bytes) and raises :class:`FrameError` for anything
else, so a malformed message never reaches the Raft core.
"""

from __future__ import annotations

from typing import Any

from agentflow.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)

__all__ = [
    "FrameError",
    "decode_message",
    "encode_message",
    "snapshot_from_wire",
    "snapshot_to_wire",
]


class FrameError(ValueError):
    """A peer frame or message that is malformed, over a limit, or fails its MAC."""


MAX_ID_CHARS = 128
MAX_MEMBERS = 1024
_INT_MAX = (1 << 63) - 1
_MESSAGE_TYPES = {t.value: t for t in MessageType}

_ENTRY_TYPES = {EntryType.NORMAL: 0, EntryType.CONF_CHANGE: 1}
_ENTRY_TYPES_BACK = {v: k for k, v in _ENTRY_TYPES.items()}


def snapshot_to_wire(snap: Snapshot, *, with_data: bool = True) -> list[Any]:
    meta = snap.metadata
    return [
        meta.index,
        meta.term,
        sorted(meta.conf_state.voters),
        sorted(meta.conf_state.learners),
        snap.data if with_data else b"",
    ]


def snapshot_from_wire(raw: Any, data: bytes | None = None) -> Snapshot:
    if type(raw) is not list or len(raw) != 5:
        raise FrameError("a snapshot is a list of 5 fields")
    index, term, voters, learners, inline = raw
    conf = ConfState(voters=_ids(voters, "voters"), learners=_ids(learners, "learners"))
    meta = SnapshotMetadata(index=_int(index, "index"), term=_int(term, "term"), conf_state=conf)
    return Snapshot(metadata=meta, data=_bytes(inline, "snapshot") if data is None else data)


def encode_message(msg: Message, *, with_snapshot_data: bool = True) -> list[Any]:
    return [
        msg.type.value,
        msg.from_,
        msg.to,
        msg.term,
        msg.log_term,
        msg.index,
        [[e.term, e.index, _ENTRY_TYPES[e.type], e.data] for e in msg.entries],
        msg.commit,
        msg.reject,
        msg.reject_hint,
        None
        if msg.snapshot is None
        else snapshot_to_wire(msg.snapshot, with_data=with_snapshot_data),
        msg.context,
    ]


def decode_message(raw: Any, snapshot_data: bytes | None = None) -> Message:
    if type(raw) is not list or len(raw) != 12:
        raise FrameError("a message is a list of 12 fields")
    kind, from_, to, term, log_term, index, entries, commit, reject, hint, snap, context = raw
    if type(kind) is not str or kind not in _MESSAGE_TYPES:
        raise FrameError(f"unknown message type {str(kind)[:32]!r}")
    if type(entries) is not list:
        raise FrameError("entries must be a list")
    if type(reject) is not bool:
        raise FrameError("reject must be a boolean")
    return Message(
        type=_MESSAGE_TYPES[kind],
        from_=_id(from_, "from"),
        to=_id(to, "to"),
        term=_int(term, "term"),
        log_term=_int(log_term, "log_term"),
        index=_int(index, "index"),
        entries=tuple(_entry(e) for e in entries),
        commit=_int(commit, "commit"),
        reject=reject,
        reject_hint=_int(hint, "reject_hint"),
        snapshot=None if snap is None else snapshot_from_wire(snap, snapshot_data),
        context=_bytes(context, "context"),
    )


def _entry(raw: Any) -> Entry:
    if type(raw) is not list or len(raw) != 4:
        raise FrameError("an entry is a list of 4 fields")
    term, index, kind, data = raw
    if type(kind) is not int or kind not in _ENTRY_TYPES_BACK:
        raise FrameError(f"unknown entry type {kind!r}"[:64])
    return Entry(
        term=_int(term, "entry term"),
        index=_int(index, "entry index"),
        type=_ENTRY_TYPES_BACK[kind],
        data=_bytes(data, "entry data"),
    )


def _int(value: Any, what: str) -> int:
    if type(value) is not int or not 0 <= value <= _INT_MAX:
        raise FrameError(f"{what} must be an integer in 0..2**63-1")
    return value


def _bytes(value: Any, what: str) -> bytes:
    if type(value) is not bytes:
        raise FrameError(f"{what} must be bytes")
    return value


def _id(value: Any, what: str) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_ID_CHARS:
        raise FrameError(f"{what} must be a node id of 1..{MAX_ID_CHARS} characters")
    return value


def _ids(value: Any, what: str) -> frozenset[str]:
    if type(value) is not list or len(value) > MAX_MEMBERS:
        raise FrameError(f"{what} must be a list of at most {MAX_MEMBERS} node ids")
    return frozenset(_id(v, what) for v in value)
