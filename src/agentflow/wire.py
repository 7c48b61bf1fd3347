"""The worker session wire format: one msgpack map per WebSocket binary frame.

Every frame is a map with a ``"t"`` (type) key. Worker to master: ``hello``, ``report``,
``heartbeat``, ``drain``, ``bye``. Master to worker: ``welcome``, ``assign``, ``cancel``,
``ack``, ``error``. Nothing is ever unpickled; a frame over ``MAX_FRAME_BYTES`` is refused.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["MAX_FRAME_BYTES", "PROTOCOL_VERSION", "FrameError", "pack", "unpack"]

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 << 20


class FrameError(ValueError):
    """A frame that is not a msgpack map with a string ``t``."""


def pack(frame: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(frame, use_bin_type=True)
    return data


def unpack(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        frame = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise FrameError(f"undecodable frame: {exc}") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("t"), str):
        raise FrameError("frame must be a map with a string 't'")
    return frame
