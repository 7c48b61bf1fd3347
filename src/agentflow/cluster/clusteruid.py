"""Which cluster a data dir belongs to: a uid kept in raft.db and checked in the peer hello.

The name (``--cluster-id``) is configuration; the uid is the data's. Members founded together
derive the same uid from the name (as does a data dir written before uids existed), so they
agree without talking. A restored backup or a forced new cluster gets a fresh random one, so
the members of the cluster it came from are refused: their data is another history. A master
started with ``--join`` on an empty data dir has none until the first member that dials it
names one; it keeps that uid (durably, before it answers) and refuses every other.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable

from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.raftstore import RaftStore
from agentflow.cluster.statestore import StateStore

__all__ = [
    "UID_INFO",
    "UID_META",
    "UidGate",
    "derived_uid",
    "new_uid",
    "settle_uid",
    "uid_refusal",
]

log = logging.getLogger(__name__)

UID_META = "cluster_uid"  # the raft.db meta key
UID_INFO = "cluster_uid"  # the key of the peer hello's info map


def derived_uid(name: str) -> str:
    """The uid every founding member of the cluster ``name`` derives alike."""
    return "n-" + hashlib.sha256(b"agentflow cluster " + name.encode()).hexdigest()[:24]


def new_uid() -> str:
    """A uid no other cluster has: a restored or forced cluster's."""
    return "r-" + uuid.uuid4().hex


async def settle_uid(config: ClusterConfig, raftstore: RaftStore, statestore: StateStore) -> str:
    """This data dir's uid, derived and kept if it has none yet; "" for an empty joiner."""
    kept = await raftstore.get_meta(UID_META)
    if isinstance(kept, str) and kept:
        return kept
    if config.join and await _empty(statestore):
        return ""  # learnt from the first member that dials (Transport.adopt_uid)
    uid = derived_uid(config.cluster_id)
    await raftstore.set_meta(UID_META, uid)
    return uid


async def _empty(statestore: StateStore) -> bool:
    saved = await statestore.load()
    return saved is None or saved[0] == 0


def uid_refusal(mine: str, theirs: str | None) -> str | None:
    """Why a peer naming the uid ``theirs`` is refused by a node of uid ``mine`` (or None).

    A peer that names none is an empty joiner (or a master of a version without uids): it is
    admitted, since it holds no history of its own to mix in."""
    if mine and theirs and theirs != mine:
        return (
            f"its data belongs to cluster uid {theirs}, not {mine} (a cluster restored from"
            " a backup or forced new refuses members of the one it came from)"
        )
    return None


class UidGate:
    """This node's uid as the peer handshake checks it, and how an empty joiner learns one."""

    def __init__(self, advertise: dict[str, str]) -> None:
        self._advertise = advertise  # the hello's info map this node sends
        self.uid = ""
        self.keep: Callable[[str], Awaitable[None]] | None = None  # makes a learnt uid durable

    def set(self, uid: str) -> None:
        self.uid = uid
        if uid:
            self._advertise[UID_INFO] = uid

    def current(self) -> str:
        return self.uid

    async def admit(self, info: dict[str, str], from_: str) -> str | None:
        """Why a caller that sent ``info`` is refused (None: admitted, its uid learnt if this
        node had none, durably before the caller is welcomed)."""
        theirs = info.get(UID_INFO)
        why = uid_refusal(self.uid, theirs)
        if why is not None or self.uid or not theirs or self.keep is None:
            return why
        await self.keep(theirs)
        if (why := uid_refusal(self.current(), theirs)) is not None:  # named meanwhile
            return why
        self.set(theirs)
        log.info("joined cluster uid %s (named by %s)", theirs, from_)
        return None
