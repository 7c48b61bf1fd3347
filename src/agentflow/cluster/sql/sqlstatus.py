"""What ``GET /api/v1/cluster`` shows of a master on a SQL store: the keys of the Raft
cluster's status (:mod:`agentflow.cluster.status`), filled from the lease and the member rows,
plus the store's URL (redacted) and what its durability settings risk, if anything."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agentflow.cluster.image import Member
from agentflow.cluster.sql.contract import MemberRow
from agentflow.cluster.sql.logconfig import SqlLogConfig
from agentflow.cluster.versions import FORMATS_KEY, format_status
from agentflow.raft import ConfState, Status
from agentflow.state.envelope import LOG_FORMAT_LEGACY, LOG_FORMATS_READ

if TYPE_CHECKING:
    from agentflow.cluster.sql.sqllog import SqlLog

__all__ = [
    "aged",
    "live_members",
    "live_rows",
    "sql_raft_status",
    "sql_status",
    "written_format",
]


def aged(rows: Iterable[MemberRow], by_s: float) -> list[MemberRow]:
    """``rows`` as they stand ``by_s`` seconds after they were read: each master unseen for
    that much longer."""
    if by_s <= 0:
        return list(rows)
    return [replace(row, seen_s_ago=row.seen_s_ago + by_s) for row in rows]


def live_rows(rows: Iterable[MemberRow], live_s: float) -> list[MemberRow]:
    """The rows of the masters seen within ``live_s``."""
    return [row for row in rows if row.seen_s_ago <= live_s]


def live_members(config: SqlLogConfig, rows: Iterable[MemberRow]) -> dict[str, Member]:
    """The masters seen within ``member_live_s``, this one always, as cluster members."""
    me = config.node_id
    found = {me: Member(node_id=me, raft_address="", api_url=config.api_url)}
    for row in live_rows(rows, config.member_live_s):
        if row.node_id != me:
            found[row.node_id] = Member(node_id=row.node_id, raft_address="", api_url=row.api_url)
    return found


def sql_raft_status(log: SqlLog) -> Status:
    """The log as a Raft status: the term is the lease's epoch, everything applied is
    committed, and the voters are the live masters (any of them may write next)."""
    applied = log.replica.applied
    return Status(
        id=log.config.node_id,
        term=log.epoch,
        vote=None,
        role=log.role,
        leader_id=log.leader_id,
        commit=applied,
        applied=applied,
        last_index=max(applied, log.replica.last_index),
        conf_state=ConfState(voters=frozenset(log.members)),
        lead_transferee=None,
        progress={},
    )


def written_format(node_id: str, rows: Iterable[MemberRow], live_s: float) -> int:
    """The log format the writer writes: the newest that it and every live master read."""
    newest = LOG_FORMATS_READ[1]
    for row in live_rows(rows, live_s):
        if row.node_id != node_id:
            newest = min(newest, max(row.reads_format, LOG_FORMAT_LEGACY))
    return newest


def _peer_info(rows: Iterable[MemberRow]) -> dict[str, dict[str, str]]:
    """The member rows as the Raft transport's hello info (what :func:`format_status` reads)."""
    return {row.node_id: {FORMATS_KEY: f"{LOG_FORMAT_LEGACY}-{row.reads_format}"} for row in rows}


def _member(log: SqlLog, row: MemberRow, live: bool) -> dict[str, Any]:
    me = row.node_id == log.config.node_id
    applied = log.replica.applied
    return {
        "id": row.node_id,
        "api_url": row.api_url,
        "raft_address": "",
        "role": "leader" if row.node_id == log.leader_id else "voter",
        "match_index": applied if me else row.applied,
        "lag": (applied - (applied if me else row.applied)) if log.is_leader else None,
        "last_contact_s": None if me else round(row.seen_s_ago, 3),
        "connected": me or live,
        "link": "self" if me else ("up" if live else "down"),
    }


def sql_status(log: SqlLog) -> dict[str, Any]:
    config = log.config
    read = log.rows  # aged to now
    live = {row.node_id for row in live_rows(read, config.member_live_s)}
    rows = {row.node_id: row for row in read}
    applied = log.replica.applied
    rows.setdefault(
        config.node_id,
        MemberRow(config.node_id, config.api_url, 0.0, applied, LOG_FORMATS_READ[1], ""),
    )
    members = [
        _member(log, row, row.node_id in live or row.node_id == config.node_id)
        for _, row in sorted(rows.items())
    ]
    voters = sorted(live | {config.node_id})
    return {
        "node_id": config.node_id,
        "cluster_id": config.cluster_id,
        "leader_id": log.leader_id,
        "leader_url": log.leader_url,
        "role": log.role.value.lower(),
        "term": log.epoch,
        "commit_index": applied,
        "applied_index": applied,
        "last_index": max(applied, log.replica.last_index),
        "snapshot_index": log.replica.snapshot_index,
        "members": members,
        "link_timeout_s": round(config.member_live_s, 3),
        "rejected_entries": log.machine.rejected.view(),
        "formats": format_status(config.node_id, voters, _peer_info(read)),
        "recent_leaders": [dict(seen) for seen in reversed(log.timings.leaders)],
        "store": config.store_url,
        "store_warning": log.store_warning,  # a durability setting that may lose commits
    }
