"""The format version of a log entry: the envelope around a command's ``[name, body]``.

Format 1 (every release before format versions) is the bare list ``[name, body]``. Format 2
and later wrap it: ``[format, name, body]``, the format an integer first, so a reader tells the
two apart by the first item's type and refuses a format newer than it knows with a reason
built from the bytes alone (the same on every replica of one version). Which format a leader
writes is the highest that every member of the cluster reads (:mod:`agentflow.cluster.versions`,
etcd's cluster version), so a member that cannot read an entry never sees it during an upgrade.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "LOG_FORMAT",
    "LOG_FORMATS_READ",
    "LOG_FORMAT_LEGACY",
    "WORKSPACE_FORMAT",
    "FormatError",
    "entry_format",
    "unwrap",
    "wrap",
]

LOG_FORMAT_LEGACY = 1  # the bare ``[name, body]`` that releases before format versions write
LOG_FORMAT = 3  # the newest format this code writes
LOG_FORMATS_READ = (LOG_FORMAT_LEGACY, LOG_FORMAT)  # the oldest and newest it reads
# Format 3 adds git workspaces: the spec's ``workspace`` and ``merge``, an attempt's
# ``workspace``, a report's ``bases``, a worker's ``workspaces``. They are left off entries and
# rows at their defaults, so format 3 without them is format 2's bytes; a master of format 2
# refuses what carries them, so the API takes workspace tasks only once the cluster writes 3.
WORKSPACE_FORMAT = 3


class FormatError(ValueError):
    """An entry whose envelope is malformed or of a format this code does not read."""


def wrap(fmt: int, name: str, body: dict[str, Any]) -> list[Any]:
    """The envelope of format ``fmt`` around ``[name, body]``."""
    assert LOG_FORMAT_LEGACY <= fmt <= LOG_FORMAT, fmt
    if fmt == LOG_FORMAT_LEGACY:
        return [name, body]
    return [fmt, name, body]


def unwrap(value: Any) -> tuple[int, Any, Any]:
    """``(format, name, body)`` of a decoded entry; :class:`FormatError` for an envelope that is
    not one this code reads (the name and body are checked by the caller)."""
    if type(value) is not list:
        raise FormatError("an entry is a list")
    if len(value) == 2:
        return LOG_FORMAT_LEGACY, value[0], value[1]
    if len(value) != 3 or type(value[0]) is not int:
        raise FormatError("an entry is [name, body] or [format, name, body]")
    fmt = value[0]
    if fmt > LOG_FORMAT:
        raise FormatError(
            f"entry format {fmt} is newer than this master reads"
            f" ({LOG_FORMATS_READ[0]}..{LOG_FORMATS_READ[1]}): upgrade it"
        )
    if fmt <= LOG_FORMAT_LEGACY:
        raise FormatError(f"entry format {fmt} has no envelope")
    return fmt, value[1], value[2]


def entry_format(data: bytes) -> int:
    """The format of the entry ``data`` as far as this code reads formats, from its first two
    bytes (a msgpack array of 3 whose first item is a small integer), without decoding it: an
    entry of a newer format counts as the newest this code knows."""
    if len(data) > 1 and data[0] == 0x93 and LOG_FORMAT_LEGACY < data[1] < 0x80:
        return min(data[1], LOG_FORMAT)
    return LOG_FORMAT_LEGACY
