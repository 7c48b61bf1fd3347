"""A simulated master's disk: what is synced survives a crash, what is not may not.

Each Ready's write (:class:`agentflow.cluster.driver.Write`) is appended to the disk as one
record — a length, a CRC-32 of the payload, the payload — and is durable only once fsynced.
The fsync of a write may be instant, slow, or stalled for a long while (the node's driver then
waits, as a master awaiting its fsync thread does). A crash keeps a prefix of the unsynced
records, chosen by the seed: none, some, or all of them; and when the fault mix allows it, the
last record kept is torn (cut anywhere, header included).

Recovery reads the records back as the real store would (SQLite rolls an interrupted
transaction back): a record whose length or checksum does not hold at the END of the disk is a
torn last write and is truncated; one in the middle, followed by good records, is corruption
and recovery refuses to start (:class:`CorruptDiskError`). What recovery keeps becomes durable
(it is what the node finds on restart); it was never acknowledged, which Raft allows.
"""

from __future__ import annotations

import random
import struct
import zlib
from dataclasses import dataclass, field

import msgpack

from agentflow.cluster.codec import snapshot_from_wire, snapshot_to_wire
from agentflow.cluster.driver import Write
from agentflow.raft import Entry, EntryType, HardState

__all__ = ["CorruptDiskError", "DiskFaults", "SimDisk", "decode_write", "encode_write", "recover"]

_HEADER = struct.Struct(">II")  # payload length, CRC-32 of the payload
_TYPES = {EntryType.NORMAL: 0, EntryType.CONF_CHANGE: 1}
_TYPES_BACK = {v: k for k, v in _TYPES.items()}


class CorruptDiskError(AssertionError):
    """A record that does not check out, with good records after it: not a torn write."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DiskFaults:
    """One seed's disk: how slow fsync is, how often it stalls, what a crash keeps."""

    fsync_ms_max: int = 0  # a follower's fsync takes up to this long (0: instant)
    stall_rate: float = 0.0  # the chance that one fsync stalls
    stall_ms: int = 0  # for this long
    keep_unsynced: float = 0.0  # the chance that a crash keeps some unsynced records
    torn: bool = False  # and that the last record it keeps is torn

    @staticmethod
    def draw(rng: random.Random, *, enabled: bool) -> DiskFaults:
        if not enabled:
            return DiskFaults()
        return DiskFaults(
            fsync_ms_max=rng.choice((0, 0, 3, 12)),
            stall_rate=rng.choice((0.0, 0.0, 0.01, 0.05)),
            stall_ms=rng.choice((100, 400)),
            keep_unsynced=rng.choice((0.0, 0.5, 1.0)),
            torn=rng.random() < 0.5,
        )

    def fsync_ms(self, rng: random.Random) -> int:
        """How long the next fsync takes (0: done at once)."""
        if self.stall_rate and rng.random() < self.stall_rate:
            return self.stall_ms
        return rng.randint(0, self.fsync_ms_max) if self.fsync_ms_max else 0


def encode_write(write: Write) -> bytes:
    """One record: header and payload."""
    snapshot = write.snapshot
    hard = write.hard_state
    payload: bytes = msgpack.packb(
        [
            None if snapshot is None else snapshot_to_wire(snapshot),
            [[e.term, e.index, _TYPES[e.type], e.data] for e in write.entries],
            None if hard is None else [hard.term, hard.vote, hard.commit],
        ],
        use_bin_type=True,
    )
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_write(payload: bytes) -> Write:
    snapshot, entries, hard = msgpack.unpackb(payload, raw=False)
    return Write(
        snapshot=None if snapshot is None else snapshot_from_wire(snapshot),
        entries=tuple(
            Entry(term=t, index=i, type=_TYPES_BACK[k], data=d) for t, i, k, d in entries
        ),
        hard_state=None if hard is None else HardState(term=hard[0], vote=hard[1], commit=hard[2]),
    )


def recover(data: bytes) -> tuple[list[Write], int]:
    """The writes of the good records, in order, and how many bytes of torn tail were cut.

    Raises :class:`CorruptDiskError` for a bad record that is not the last one.
    """
    writes: list[Write] = []
    at = 0
    while at < len(data):
        end = at + _HEADER.size
        if end > len(data):
            return writes, len(data) - at  # a torn header: the last write, cut
        length, crc = _HEADER.unpack_from(data, at)
        payload = data[end : end + length]
        if len(payload) == length and zlib.crc32(payload) == crc:
            writes.append(decode_write(payload))
            at = end + length
            continue
        if _has_good_record_after(data, at + 1):
            raise CorruptDiskError(f"a bad record at byte {at} with good records after it")
        return writes, len(data) - at
    return writes, 0


def _has_good_record_after(data: bytes, start: int) -> bool:
    """Whether a well-formed record starts anywhere at or after ``start`` (a scan, as a
    careful recovery does before calling a bad record the torn tail)."""
    for at in range(start, len(data) - _HEADER.size + 1):
        length, crc = _HEADER.unpack_from(data, at)
        end = at + _HEADER.size + length
        if length and end <= len(data) and zlib.crc32(data[at + _HEADER.size : end]) == crc:
            return True
    return False


def _record_ends(data: bytes) -> list[int]:
    """Where each (well-formed) record of ``data`` ends."""
    ends: list[int] = []
    at = 0
    while at < len(data):
        (length,) = struct.unpack_from(">I", data, at)
        at += _HEADER.size + length
        ends.append(at)
    return ends


@dataclass(slots=True)
class SimDisk:
    """The unsynced tail of one node's disk (what is synced lives in its durable storage)."""

    faults: DiskFaults = field(default_factory=DiskFaults)
    unsynced: bytearray = field(default_factory=bytearray)
    stats: dict[str, int] = field(default_factory=dict)

    def write(self, write: Write) -> None:
        self.unsynced += encode_write(write)

    def sync(self) -> list[Write]:
        """fsync: every write so far is durable; return them, in order, to be stored."""
        writes, torn = recover(bytes(self.unsynced))
        assert torn == 0, "a write torn without a crash"
        self.unsynced.clear()
        return writes

    def crash(self, rng: random.Random) -> list[Write]:
        """Power lost: what the disk kept of the unsynced writes, as recovery reads it."""
        data = bytes(self.unsynced)
        self.unsynced.clear()
        if not data:
            return []
        ends = _record_ends(data)
        kept = 0
        if self.faults.keep_unsynced and rng.random() < self.faults.keep_unsynced:
            kept = rng.randint(0, len(ends))
        cut = ends[kept - 1] if kept else 0
        if self.faults.torn and kept < len(ends) and rng.random() < 0.5:
            cut = rng.randint(cut + 1, ends[kept] - 1)  # the next write, half on the platter
        writes, torn = recover(data[:cut])
        assert len(writes) == kept, (len(writes), kept)
        self._count("unsynced_writes_lost", len(ends) - kept)
        self._count("unsynced_writes_kept", kept)
        self._count("torn_writes_truncated", 1 if torn else 0)
        return writes

    def _count(self, name: str, n: int) -> None:
        if n:
            self.stats[name] = self.stats.get(name, 0) + n
