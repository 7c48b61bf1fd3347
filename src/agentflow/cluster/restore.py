"""Making a data dir a one-member cluster: from a backup, or from a survivor's own data.

Both write the same thing: a state image whose configuration is this node alone (so that a
master started on it is a cluster of one, now and after any restart), an empty log behind it,
a hard state that commits it, and a fresh cluster uid (:mod:`agentflow.cluster.clusteruid`), so
the members of the cluster the data came from are refused. The others come back with
``--join`` and ``agentflow cluster add-member``.

- :func:`seed_from_backup` (``agentflow cluster restore``): a new data dir from a backup file.
- :func:`force_new_cluster` (``agentflow master --force-new-cluster``): a survivor's data dir,
  its log replayed and kept whole. Every entry it holds counts as committed, as etcd does: an
  entry acknowledged to a client was on a majority, so it may be here without this node having
  learnt that it committed; dropping the tail could lose it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from agentflow.cluster.backup import BackupHeader
from agentflow.cluster.clusteruid import UID_META, new_uid, settle_uid
from agentflow.cluster.config import ClusterConfig
from agentflow.cluster.image import Image, Member
from agentflow.cluster.raftstore import RaftStore
from agentflow.cluster.statestore import StateStore
from agentflow.cluster.transport import Transport
from agentflow.errors import ConfigError, ValidationError
from agentflow.raft import ConfChange, ConfState, EntryType, HardState
from agentflow.state import StateMachine

__all__ = ["force_new_cluster", "prepare_identity", "seed_from_backup"]

log = logging.getLogger(__name__)

RESTORED_META = "restored_from"  # [index, digest] of the backup, until the first start checks


async def prepare_identity(
    config: ClusterConfig,
    machine: StateMachine,
    transport: Transport,
    raftstore: RaftStore,
    statestore: StateStore,
) -> None:
    """Before recovery: force a new cluster if asked, then give the transport this data
    dir's uid and a way to keep the one an empty joiner learns."""
    if config.force_new_cluster:
        await force_new_cluster(config, machine, raftstore, statestore)
    restored = await raftstore.get_meta(RESTORED_META)
    if restored:
        await _check_restored(machine, statestore, restored)
        await raftstore.set_meta(RESTORED_META, None)
    transport.uid.set(await settle_uid(config, raftstore, statestore))
    transport.uid.keep = lambda uid: raftstore.set_meta(UID_META, uid)


async def _check_restored(
    machine: StateMachine, statestore: StateStore, restored: list[Any]
) -> None:
    """The first start on a restored data dir: the state it recovers is the backup's (the
    digest at the backup's index, before this master proposes anything)."""
    index, digest = restored
    saved = await statestore.load()
    assert saved is not None, "a restored data dir has its image"
    machine.restore(Image.unpack(saved[1]).machine)
    mine = machine.digest()
    if mine == digest:
        log.info("restored state at index %d: digest %s, the backup's", index, mine)
    else:  # other limits than the ones restore checked with (a finished-task cap, say)
        log.warning("restored state at index %d: digest %s, the backup's %s", index, mine, digest)


def _alone(node_id: str, raft_address: str, api_url: str) -> tuple[ConfState, dict[str, Member]]:
    member = Member(node_id=node_id, raft_address=raft_address, api_url=api_url)
    return ConfState(voters=frozenset({node_id})), {node_id: member}


async def _write(
    raftstore: RaftStore, statestore: StateStore, image: Image, locks: dict[str, Any]
) -> str:
    """Write ``image`` as the whole of a one-member data dir; return the new uid. The image
    goes first: a crash before the rest leaves it with an older log behind it, which recovery
    ignores, so running again finishes the job."""
    await statestore.save(image.index, image.pack(), locks)
    await raftstore.compact(image.index)
    hard = HardState(term=image.term, vote=None, commit=image.index)
    await raftstore.save(hard, (), sync=True)
    uid = new_uid()
    await raftstore.set_meta(UID_META, uid)
    return uid


async def force_new_cluster(
    config: ClusterConfig, machine: StateMachine, raftstore: RaftStore, statestore: StateStore
) -> None:
    """Rewrite this master's data dir into a cluster of itself alone, its state kept."""
    saved = await statestore.load()
    if saved is None:
        raise ConfigError(
            f"--force-new-cluster needs a member's data, and {config.data_dir} has none"
        )
    if config.join:
        raise ConfigError("--force-new-cluster keeps this member's data: it cannot --join")
    image = Image.unpack(saved[1])
    hard, entries = await raftstore.load(image.index)
    if (
        image.conf_state.voters == {config.node_id}
        and not image.conf_state.learners
        and not any(e.type is EntryType.CONF_CHANGE for e in entries)
    ):
        log.info("--force-new-cluster: %s is already a cluster of itself alone", config.node_id)
        return
    if image.machine:
        machine.restore(image.machine)
    for entry in entries:  # as the applier does, without a core to change
        if entry.type is EntryType.CONF_CHANGE:
            try:
                ConfChange.decode(entry.data)
            except (ValueError, TypeError, KeyError) as exc:
                machine.reject(entry.index, f"undecodable membership change: {exc}")
        elif entry.data:
            machine.apply_entry(entry.index, entry.data)
    machine.drain_events()
    last = entries[-1] if entries else None
    index, term = (last.index, last.term) if last else (image.index, image.term)
    address = f"{config.raft_host}:{config.raft_port}"
    conf, members = _alone(config.node_id, address, config.api_url)
    term = max(term, hard.term if hard is not None else 0)
    forced = Image(index=index, term=term, conf_state=conf, members=members)
    forced.machine = machine.snapshot()
    uid = await _write(raftstore, statestore, forced, machine.locks.snapshot())
    log.warning(
        "forced a new cluster: %s alone at index %d (was %s), cluster uid %s",
        config.node_id,
        index,
        ", ".join(sorted(image.members)),
        uid,
    )


def seed_from_backup(
    data_dir: Path,
    header: BackupHeader,
    body: bytes,
    *,
    node_id: str,
    raft_address: str,
    api_url: str,
) -> str:
    """Seed the empty ``data_dir`` with the (checked) backup; return the new cluster uid."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise ValidationError(f"{data_dir} is not empty: restore into a new data dir")
    try:
        image = Image.unpack(body)
        scratch = StateMachine()
        if image.machine:
            scratch.restore(image.machine)
    except (MemoryError, RecursionError):
        raise
    except Exception as exc:
        raise ValidationError(f"the backup's image does not restore: {exc}") from None
    if scratch.digest() != header.state_digest or image.index != header.index:
        raise ValidationError("the backup's image is not the state its header describes")
    conf, members = _alone(node_id, raft_address, api_url)
    restored = [header.index, header.state_digest]
    seeded = Image(
        index=image.index, term=image.term, conf_state=conf, members=members, machine=image.machine
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_seed(data_dir, seeded, scratch.locks.snapshot(), restored))


async def _seed(data_dir: Path, image: Image, locks: dict[str, Any], restored: list[Any]) -> str:
    raftstore = RaftStore(data_dir / "raft.db")
    statestore = StateStore(data_dir / "state.db")
    await raftstore.open()
    await statestore.open()
    try:
        uid = await _write(raftstore, statestore, image, locks)
        await raftstore.set_meta(RESTORED_META, restored)
        return uid
    finally:
        await raftstore.close()
        await statestore.close()
