"""Which format versions each master reads, and the one the cluster writes (etcd's cluster
version).

A master advertises the log entry formats it reads in its peer hello (``info["formats"]``,
``"oldest-newest"``); a master of a release before format versions advertises nothing and reads
format 1 only. The leader writes every entry in the highest format that it and every voter and
learner of the configuration read, so during a rolling upgrade (members of version N and N+1
side by side) no member is ever sent an entry it cannot decode. A member the leader has not
heard a hello from counts as reading format 1: the leader writes the newer format only once it
knows every member reads it. Peer link versions (``VERSION`` of the hello) are a range too:
a listener admits a dialer whose version it speaks.

Going back is refused: once this master applied an entry of format F (``format_floor`` of its
transport), it links to no peer that reads only older formats, either way (a member restarted
on the previous release after the cluster moved on would skip the entries it cannot read). The
floor is what this master applied since it started, so the check is best effort after a restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agentflow import wire
from agentflow.cluster.codec import FrameError
from agentflow.cluster.image import IMAGE_FORMAT
from agentflow.state.envelope import LOG_FORMAT_LEGACY, LOG_FORMATS_READ

__all__ = [
    "FORMATS_KEY",
    "PEER_VERSIONS",
    "advertised_formats",
    "checked_reader",
    "cluster_format",
    "format_status",
    "peer_refusal",
    "peer_version_refusal",
    "reads",
]

FORMATS_KEY = "formats"  # the hello's info key that lists the log formats a master reads
PEER_VERSIONS = (2, 2)  # the oldest and newest peer hello versions this master speaks


def advertised_formats() -> dict[str, str]:
    """What this master adds to its hello's info: the log formats it reads."""
    oldest, newest = LOG_FORMATS_READ
    return {FORMATS_KEY: f"{oldest}-{newest}"}


_OWN_FORMATS = advertised_formats()[FORMATS_KEY]


def reads(info: Mapping[str, str] | None) -> tuple[int, int]:
    """The (oldest, newest) log formats a peer that advertised ``info`` reads; (1, 1) for a
    peer that advertised none (a release before format versions) or not read yet."""
    text = (info or {}).get(FORMATS_KEY, "")
    oldest, sep, newest = text.partition("-")
    if not sep or not oldest.isdigit() or not newest.isdigit() or len(text) > 16:
        return LOG_FORMAT_LEGACY, LOG_FORMAT_LEGACY
    low, high = int(oldest), int(newest)
    if not LOG_FORMAT_LEGACY <= low <= high:
        return LOG_FORMAT_LEGACY, LOG_FORMAT_LEGACY
    return low, high


def cluster_format(
    node_id: str, members: Iterable[str], peer_info: Mapping[str, Mapping[str, str]]
) -> int:
    """The log format the leader ``node_id`` writes: the highest every one of ``members``
    (voters and learners) reads, and never above its own newest."""
    newest = LOG_FORMATS_READ[1]
    for member in members:
        if member != node_id:
            info = peer_info.get(member)
            if info is None or info.get(FORMATS_KEY) != _OWN_FORMATS:  # (it runs per proposal)
                newest = min(newest, reads(info)[1])
    return newest


def peer_refusal(version: int, info: Mapping[str, str], floor: int) -> str | None:
    """Why a peer whose hello says ``version`` and ``info`` is refused by a master that applied
    log format ``floor``, or None: a peer protocol it does not speak, or a downgrade."""
    return peer_version_refusal(version) or _reader_refusal(info, floor)


def peer_version_refusal(version: int) -> str | None:
    """Why a peer speaking hello ``version`` is refused, or None when this master speaks it."""
    oldest, newest = PEER_VERSIONS
    if oldest <= version <= newest:
        return None
    return f"speaks peer protocol version {version}, this node {oldest}..{newest}"


def checked_reader(peer_id: str, info: dict[str, str], floor: int) -> dict[str, str]:
    """The ``info`` a dialed peer answered, once it reads log format ``floor``."""
    why = _reader_refusal(info, floor)
    if why is not None:
        raise FrameError(f"peer {peer_id} {why}")
    return info


def _reader_refusal(info: Mapping[str, str], floor: int) -> str | None:
    newest = reads(info)[1]
    if newest >= floor:
        return None
    return (
        f"reads log formats up to {newest}, but this cluster writes {floor}:"
        " a master cannot go back to an older release"
    )


def format_status(
    node_id: str, members: Iterable[str], peer_info: Mapping[str, Mapping[str, str]]
) -> dict[str, Any]:
    """The ``formats`` of the cluster status: what this master reads and speaks, what it would
    write as leader, and the log formats each member advertised (None: not heard from yet;
    a member that advertised none reads format 1)."""
    members = list(members)
    known: dict[str, list[int] | None] = {
        nid: list(LOG_FORMATS_READ if nid == node_id else reads(peer_info[nid]))
        if nid == node_id or nid in peer_info
        else None
        for nid in sorted(members)
    }
    return {
        "log": list(LOG_FORMATS_READ),
        "log_written": cluster_format(node_id, members, peer_info),
        "image": IMAGE_FORMAT,
        "peer_protocol": list(PEER_VERSIONS),
        "worker_protocol": [wire.MIN_PROTOCOL_VERSION, wire.PROTOCOL_VERSION],
        "members": known,
    }
