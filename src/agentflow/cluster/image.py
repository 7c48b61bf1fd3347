"""The state image: the state machine plus the cluster membership at one log index.

The same bytes are state.db's image and the Raft snapshot sent to lagging followers, so a
node restored from either knows the configuration and the member addresses at that index.

The image is a msgpack map. Its ``format`` key is the image's format version: absent in images
written before format versions (format 1), 2 since. A reader takes the keys it knows by name
and ignores others, so a format-1 reader reads a format-2 image; an image of a format newer
than :data:`IMAGE_FORMAT` is refused (a snapshot this master cannot read is never installed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import msgpack

from agentflow.raft import ConfState
from agentflow.state import StateMachine

__all__ = ["IMAGE_FORMAT", "Image", "Member", "image_format", "member_context", "restore_error"]

IMAGE_FORMAT = 2  # the newest image format this code writes and reads
_IMAGE_FORMAT_LEGACY = 1  # images without a ``format`` key


@dataclass(slots=True, kw_only=True)
class Member:
    node_id: str
    raft_address: str
    api_url: str = ""

    def to_wire(self) -> list[str]:
        return [self.node_id, self.raft_address, self.api_url]


@dataclass(slots=True, kw_only=True)
class Image:
    index: int
    term: int
    conf_state: ConfState
    members: dict[str, Member] = field(default_factory=dict)
    machine: bytes = b""

    def pack(self) -> bytes:
        body: dict[str, Any] = {
            "format": IMAGE_FORMAT,
            "index": self.index,
            "term": self.term,
            "voters": sorted(self.conf_state.voters),
            "learners": sorted(self.conf_state.learners),
            "members": [m.to_wire() for m in self.members.values()],
            "machine": self.machine,
        }
        packed: bytes = msgpack.packb(body, use_bin_type=True)
        return packed

    @classmethod
    def fresh(cls, node_id: str, raft_address: str, api_url: str, peers: dict[str, str]) -> Image:
        """The empty image of a new node: no configuration yet, but the member addresses given
        by ``--peers`` (and its own), which bootstrap and joining use to reach the others."""
        members = {nid: Member(node_id=nid, raft_address=addr) for nid, addr in peers.items()}
        members[node_id] = Member(node_id=node_id, raft_address=raft_address, api_url=api_url)
        return cls(index=0, term=0, conf_state=ConfState(voters=frozenset()), members=members)

    @classmethod
    def unpack(cls, data: bytes) -> Image:
        body = msgpack.unpackb(data, raw=False)
        image_format(body)
        members = {
            nid: Member(node_id=nid, raft_address=raft, api_url=api)
            for nid, raft, api in body["members"]
        }
        return cls(
            index=body["index"],
            term=body["term"],
            conf_state=ConfState(
                voters=frozenset(body["voters"]), learners=frozenset(body["learners"])
            ),
            members=members,
            machine=body["machine"],
        )


def image_format(body: Any) -> int:
    """The format of the unpacked image ``body``; ValueError for one this code cannot read."""
    if not isinstance(body, dict):
        raise ValueError("an image is a map")
    fmt = body.get("format", _IMAGE_FORMAT_LEGACY)
    if type(fmt) is not int or fmt < _IMAGE_FORMAT_LEGACY:
        raise ValueError(f"image format {fmt!r:.20} is not a format version")
    if fmt > IMAGE_FORMAT:
        raise ValueError(
            f"image format {fmt} is newer than this master reads (up to {IMAGE_FORMAT}): upgrade it"
        )
    return fmt


def member_context(raw: bytes) -> dict[str, str]:
    """The addresses a membership change carries; opaque to Raft, so never trusted to parse."""
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        return {}
    if not isinstance(doc, dict):
        return {}
    return {k: v for k, v in doc.items() if isinstance(k, str) and isinstance(v, str)}


def restore_error(data: bytes, scratch: StateMachine) -> str | None:
    """Why the image ``data`` does not restore into ``scratch`` (None when it does)."""
    try:
        image = Image.unpack(data)
        if image.machine:
            scratch.restore(image.machine)
    except (MemoryError, RecursionError):
        raise  # the node's own limits, not a verdict on the bytes
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None
