"""Raft messages on the wire: msgpack lists, field by field; nothing is ever unpickled."""

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

__all__ = ["decode_message", "encode_message", "snapshot_from_wire", "snapshot_to_wire"]

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


def snapshot_from_wire(raw: list[Any], data: bytes | None = None) -> Snapshot:
    index, term, voters, learners, inline = raw
    conf = ConfState(voters=frozenset(voters), learners=frozenset(learners))
    return Snapshot(
        metadata=SnapshotMetadata(index=index, term=term, conf_state=conf),
        data=inline if data is None else data,
    )


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


def decode_message(raw: list[Any], snapshot_data: bytes | None = None) -> Message:
    kind, from_, to, term, log_term, index, entries, commit, reject, hint, snap, context = raw
    return Message(
        type=MessageType(kind),
        from_=from_,
        to=to,
        term=term,
        log_term=log_term,
        index=index,
        entries=tuple(
            Entry(term=t, index=i, type=_ENTRY_TYPES_BACK[k], data=d) for t, i, k, d in entries
        ),
        commit=commit,
        reject=reject,
        reject_hint=hint,
        snapshot=None if snap is None else snapshot_from_wire(snap, snapshot_data),
        context=context,
    )
