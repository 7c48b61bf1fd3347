"""The worker session wire format: one msgpack map per WebSocket binary frame.

Every frame is a map with a ``"t"`` (type) key. Worker to master: ``hello``, ``report``,
``heartbeat``, ``drain``, ``bye``. Master to worker: ``welcome``, ``assign``, ``cancel``,
``ack``, ``error``. Nothing is ever unpickled; a frame over ``MAX_FRAME_BYTES`` is refused.

Unpacking is bounded before anything is allocated: no string or binary may declare more bytes
than the frame holds, no array or map more entries than the frame's entry budget, extension
types are refused, map keys are strings, and the total number of container entries in one frame
is capped (a frame of millions of empty maps would otherwise grow a process by gigabytes from a
few megabytes of input). The master decodes a worker's frames with ``MAX_FRAME_ENTRIES``; a
worker, which trusts its master, allows one entry per byte. What the fields mean, and their own
bounds, are checked by :mod:`agentflow.workerwire`.
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_FRAME_ENTRIES",
    "MIN_PROTOCOL_VERSION",
    "PROTOCOL_VERSION",
    "FrameError",
    "pack",
    "unpack",
]

PROTOCOL_VERSION = 2  # 2: many assignments per frame (``assigns``)
# The oldest worker protocol a master serves: a worker's hello names its version, the master
# answers in the lower of the two (a worker of the next release still gets frames it reads).
MIN_PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 16 << 20
# Array items + map entries + containers in one frame from a worker: a report of 10,000
# outcomes is 70,000; an empty map costs the master about 64 bytes, so this caps a frame's
# decoded size near 20 MB whatever its shape.
MAX_FRAME_ENTRIES = 300_000


class FrameError(ValueError):
    """A frame that is not a bounded msgpack map with a string ``t``."""


def pack(frame: dict[str, Any]) -> bytes:
    data: bytes = msgpack.packb(frame, use_bin_type=True)
    return data


class _Budget:
    """Counts container entries as the unpacker completes them; over budget raises."""

    __slots__ = ("left", "limit")

    def __init__(self, limit: int) -> None:
        self.left = self.limit = limit

    def spend(self, size: int) -> None:
        self.left -= size + 1
        if self.left < 0:
            raise FrameError(f"frame holds more than {self.limit} entries")

    def on_list(self, items: list[Any]) -> list[Any]:
        self.spend(len(items))
        return items

    def on_map(self, pairs: dict[str, Any]) -> dict[str, Any]:
        self.spend(len(pairs))
        return pairs


def _no_ext(code: int, data: bytes) -> Any:
    raise FrameError(f"msgpack extension type {code} is not allowed")


def unpack(data: bytes, max_entries: int = MAX_FRAME_ENTRIES) -> dict[str, Any]:
    if len(data) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(data)} bytes exceeds {MAX_FRAME_BYTES}")
    budget = _Budget(max_entries)
    try:
        frame = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            max_str_len=len(data),
            max_bin_len=len(data),
            max_array_len=min(len(data), max_entries),
            max_map_len=min(len(data), max_entries),
            max_ext_len=0,
            ext_hook=_no_ext,
            list_hook=budget.on_list,
            object_hook=budget.on_map,
        )
    except FrameError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        raise FrameError(f"undecodable frame: {exc or type(exc).__name__}") from exc
    if not isinstance(frame, dict) or not isinstance(frame.get("t"), str):
        raise FrameError("frame must be a map with a string 't'")
    return frame
