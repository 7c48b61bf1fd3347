"""The history tables of a SQL store (migration 2) and the SQL that writes and reads them.

Five tables a user's own reporting tool can query, each with the indexes its usual questions
need, and one row marking how far the history is written:

- ``agentflow_tasks``: one row per finished task (its columns, and ``packed_row``, the exact
  row the state machine kept, for reading the task back whole). ``idx`` is the log index of the
  entry whose state the row shows; ``evicted_idx`` the entry that evicted the task from the
  masters' memory (NULL while it is still held there): the API's ``history=true`` listing is
  the evicted rows, newest eviction first.
- ``agentflow_attempts``: one row per attempt (task id, attempt number).
- ``agentflow_workflows``: one row per workflow, updated as its status changes.
- ``agentflow_lock_events`` / ``agentflow_message_events``: one row per lock event and per
  message delivered to an inbox, keyed by (log index, position among that entry's events).
- ``agentflow_history_mark``: every event of an entry at or below ``applied_idx`` is written.

Every write is an idempotent upsert: rows keyed by id are replaced only by a state from the
same or a later log index (so a deposed writer's late batch never rolls a row back), event
rows are inserted once. Rewriting the tail of the log, as a new writer does, is harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ATTEMPT_COLUMNS", "TASK_COLUMNS", "WORKFLOW_COLUMNS", "HistorySql", "history_ddl"]

DialectName = Literal["postgresql", "mysql"]

TASK_COLUMNS = (
    "id", "workflow_id", "status", "grp", "priority", "title", "command", "created_ms",
    "started_ms", "finished_ms", "exit_code", "attempts", "worker", "reason", "idx",
    "evicted_idx", "packed_row",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "task_id", "attempt", "token", "worker_id", "assigned_ms", "started_ms", "finished_ms",
    "status", "exit_code", "reason", "idx",
)  # fmt: skip
WORKFLOW_COLUMNS = (
    "id", "name", "status", "created_ms", "finished_ms", "runs", "tasks", "tasks_finished",
    "idx",
)  # fmt: skip
LOCK_COLUMNS = ("idx", "pos", "at_ms", "name", "lock_session", "kind", "token")
MESSAGE_COLUMNS = (
    "idx", "pos", "at_ms", "agent_id", "inbox_cursor", "message_id", "sender", "msg_type",
    "correlation_id", "size_bytes",
)  # fmt: skip

_KEYS = "VARCHAR(255)"  # ids, names, sessions: every one is bounded well under this


def _tables(blob: str) -> list[tuple[str, str]]:
    """(table, body) of each history table; ``blob`` is the dialect's bytes type."""
    return [
        (
            "agentflow_tasks",
            f"id {_KEYS} PRIMARY KEY, workflow_id {_KEYS}, status VARCHAR(32) NOT NULL,"
            f" grp {_KEYS} NOT NULL, priority VARCHAR(16) NOT NULL,"
            " title VARCHAR(1024) NOT NULL, command VARCHAR(4096), created_ms BIGINT NOT NULL,"
            " started_ms BIGINT, finished_ms BIGINT NOT NULL, exit_code BIGINT,"
            f" attempts INT NOT NULL, worker {_KEYS}, reason VARCHAR(1024),"
            f" idx BIGINT NOT NULL, evicted_idx BIGINT, packed_row {blob} NOT NULL",
        ),
        (
            "agentflow_attempts",
            f"task_id {_KEYS} NOT NULL, attempt INT NOT NULL, token BIGINT NOT NULL,"
            f" worker_id {_KEYS} NOT NULL, assigned_ms BIGINT NOT NULL, started_ms BIGINT,"
            " finished_ms BIGINT, status VARCHAR(32), exit_code BIGINT, reason VARCHAR(1024),"
            " idx BIGINT NOT NULL, PRIMARY KEY (task_id, attempt)",
        ),
        (
            "agentflow_workflows",
            f"id {_KEYS} PRIMARY KEY, name {_KEYS} NOT NULL, status VARCHAR(32) NOT NULL,"
            " created_ms BIGINT NOT NULL, finished_ms BIGINT, runs INT NOT NULL,"
            " tasks INT NOT NULL, tasks_finished INT NOT NULL, idx BIGINT NOT NULL",
        ),
        (
            "agentflow_lock_events",
            f"idx BIGINT NOT NULL, pos INT NOT NULL, at_ms BIGINT NOT NULL, name {_KEYS} NOT NULL,"
            f" lock_session {_KEYS} NOT NULL, kind VARCHAR(32) NOT NULL, token BIGINT,"
            " PRIMARY KEY (idx, pos)",
        ),
        (
            "agentflow_message_events",
            f"idx BIGINT NOT NULL, pos INT NOT NULL, at_ms BIGINT NOT NULL,"
            f" agent_id {_KEYS} NOT NULL, inbox_cursor BIGINT NOT NULL, message_id {_KEYS},"
            f" sender {_KEYS}, msg_type VARCHAR(128), correlation_id {_KEYS}, size_bytes INT,"
            " PRIMARY KEY (idx, pos)",
        ),
        (
            "agentflow_history_mark",
            "id INT PRIMARY KEY CHECK (id = 1), applied_idx BIGINT NOT NULL",
        ),
    ]


# (name, table, columns): the queries users run, and the history listing's and retention's own.
INDEXES = (
    ("agentflow_tasks_finished", "agentflow_tasks", "finished_ms"),
    ("agentflow_tasks_status", "agentflow_tasks", "status, finished_ms"),
    ("agentflow_tasks_workflow", "agentflow_tasks", "workflow_id"),
    ("agentflow_tasks_grp", "agentflow_tasks", "grp, finished_ms"),
    ("agentflow_tasks_evicted", "agentflow_tasks", "evicted_idx, id"),
    ("agentflow_attempts_assigned", "agentflow_attempts", "assigned_ms"),
    ("agentflow_attempts_worker", "agentflow_attempts", "worker_id, assigned_ms"),
    ("agentflow_workflows_created", "agentflow_workflows", "created_ms"),
    ("agentflow_workflows_finished", "agentflow_workflows", "finished_ms"),
    ("agentflow_workflows_status", "agentflow_workflows", "status, created_ms"),
    ("agentflow_lock_events_name", "agentflow_lock_events", "name, at_ms"),
    ("agentflow_lock_events_at", "agentflow_lock_events", "at_ms"),
    ("agentflow_message_events_agent", "agentflow_message_events", "agent_id, at_ms"),
    ("agentflow_message_events_at", "agentflow_message_events", "at_ms"),
    ("agentflow_message_events_message", "agentflow_message_events", "message_id"),
)


def history_ddl(dialect: DialectName) -> list[str]:
    """Migration 2's statements for ``dialect``; each idempotent (``IF NOT EXISTS``)."""
    blob = "BYTEA" if dialect == "postgresql" else "LONGBLOB"
    suffix = (
        ""
        if dialect == "postgresql"
        else " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    )
    out = [f"CREATE TABLE IF NOT EXISTS {table} ({body}){suffix}" for table, body in _tables(blob)]
    out += [
        f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({cols})" for name, table, cols in INDEXES
    ]
    if dialect == "postgresql":
        out.append(
            "INSERT INTO agentflow_history_mark (id, applied_idx) VALUES (1, 0)"
            " ON CONFLICT (id) DO NOTHING"
        )
    else:
        out.append("INSERT IGNORE INTO agentflow_history_mark (id, applied_idx) VALUES (1, 0)")
    return out


def _upsert(dialect: DialectName, table: str, columns: tuple[str, ...], keys: str) -> str:
    """Insert a row, or replace the one with the same key when ours is of the same or a later
    log index (``idx``, the last column)."""
    marks = ", ".join(["%s"] * len(columns))
    head = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
    rest = [c for c in columns if c not in keys.split(", ") and c != "idx"]
    if dialect == "postgresql":
        sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in [*rest, "idx"])
        return f"{head} ON CONFLICT ({keys}) DO UPDATE SET {sets} WHERE {table}.idx <= EXCLUDED.idx"
    # MariaDB assigns left to right: every IF reads the old idx, which is set last.
    sets = ", ".join(f"{c} = IF(VALUES(idx) >= idx, VALUES({c}), {c})" for c in rest)
    return f"{head} ON DUPLICATE KEY UPDATE {sets}, idx = GREATEST(idx, VALUES(idx))"


def _insert_once(dialect: DialectName, table: str, columns: tuple[str, ...]) -> str:
    marks = ", ".join(["%s"] * len(columns))
    names = ", ".join(columns)
    if dialect == "postgresql":
        return f"INSERT INTO {table} ({names}) VALUES ({marks}) ON CONFLICT DO NOTHING"
    return f"INSERT IGNORE INTO {table} ({names}) VALUES ({marks})"


# (table, the column retention compares with the cutoff, in ms)
RETAINED = (
    ("agentflow_tasks", "finished_ms"),
    ("agentflow_attempts", "assigned_ms"),
    ("agentflow_workflows", "finished_ms"),
    ("agentflow_lock_events", "at_ms"),
    ("agentflow_message_events", "at_ms"),
)


def _prune(dialect: DialectName, table: str, column: str) -> str:
    """Delete at most a batch (cutoff_ms, limit) of rows older than the cutoff."""
    if dialect == "postgresql":
        return (
            f"DELETE FROM {table} WHERE ctid IN"
            f" (SELECT ctid FROM {table} WHERE {column} < %s LIMIT %s)"
        )
    return f"DELETE FROM {table} WHERE {column} < %s LIMIT %s"


@dataclass(frozen=True, slots=True, kw_only=True)
class HistorySql:
    """The statements of the history; parameters, in order, in each comment."""

    upsert_task: str  # TASK_COLUMNS
    upsert_attempt: str  # ATTEMPT_COLUMNS
    upsert_workflow: str  # WORKFLOW_COLUMNS
    insert_lock_event: str  # LOCK_COLUMNS
    insert_message_event: str  # MESSAGE_COLUMNS
    raise_mark: str  # (applied_idx) never lowered
    read_mark: str  # () -> applied_idx
    task_row: str  # (id) -> packed_row
    evicted_at: str  # (id, applied) -> evicted_idx of an evicted task this master let go
    any_evicted: str  # (applied) -> a row when some task was evicted
    prune: tuple[tuple[str, str], ...]  # (table, statement (cutoff_ms, limit))

    @classmethod
    def of(cls, dialect: DialectName) -> HistorySql:
        return cls(
            upsert_task=_upsert(dialect, "agentflow_tasks", TASK_COLUMNS, "id"),
            upsert_attempt=_upsert(
                dialect, "agentflow_attempts", ATTEMPT_COLUMNS, "task_id, attempt"
            ),
            upsert_workflow=_upsert(dialect, "agentflow_workflows", WORKFLOW_COLUMNS, "id"),
            insert_lock_event=_insert_once(dialect, "agentflow_lock_events", LOCK_COLUMNS),
            insert_message_event=_insert_once(dialect, "agentflow_message_events", MESSAGE_COLUMNS),
            raise_mark=(
                "UPDATE agentflow_history_mark SET applied_idx = GREATEST(applied_idx, %s)"
                " WHERE id = 1"
            ),
            read_mark="SELECT applied_idx FROM agentflow_history_mark WHERE id = 1",
            task_row="SELECT packed_row FROM agentflow_tasks WHERE id = %s",
            evicted_at=(
                "SELECT evicted_idx FROM agentflow_tasks WHERE id = %s AND evicted_idx <= %s"
            ),
            any_evicted="SELECT 1 FROM agentflow_tasks WHERE evicted_idx <= %s LIMIT 1",
            prune=tuple((t, _prune(dialect, t, c)) for t, c in RETAINED),
        )

    @staticmethod
    def page(statuses: int, group: bool, priority: bool, after: bool) -> str:
        """The history listing: (applied, [evicted_idx, evicted_idx, id], statuses...,
        [group], [priority], limit) -> (packed_row, evicted_idx, id), the last evicted first."""
        where = ["evicted_idx <= %s"]
        if after:
            where.append("(evicted_idx < %s OR (evicted_idx = %s AND id < %s))")
        if statuses:
            where.append(f"status IN ({', '.join(['%s'] * statuses)})")
        if group:
            where.append("grp = %s")
        if priority:
            where.append("priority = %s")
        return (
            f"SELECT packed_row, evicted_idx, id FROM agentflow_tasks WHERE {' AND '.join(where)}"
            " ORDER BY evicted_idx DESC, id DESC LIMIT %s"
        )
