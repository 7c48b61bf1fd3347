"""The storage under :class:`~agentflow.state.tasktable.TaskTable`: every task, the finished
ones held compactly.

A finished task is read far more often than it changes, and there are many of them: a
:class:`TaskRecord` with its spec, attempts and small dicts costs over a kilobyte of objects.
Past the newest ``recent`` finished tasks, a finished task is *frozen*: kept as one ``bytes``
row (msgpack, positional, field order fixed by :data:`ROW_VERSION`), deflated in memory against
the table's first frozen row (rows of similar tasks repeat most of their bytes): some 70 bytes
for a shell task. Snapshots carry rows as they are packed, never deflated.

Reading a frozen task through the mapping (``table[id]``, ``table.get(id)``) *thaws* it back into
a live record, so a handler that changes it (a workflow retry, a late report of a cancelled
attempt) changes the one record the table holds. :meth:`peek` reads without thawing (the API's
listings). Freezing happens only in :meth:`compact`, which the machine calls after each command
is applied, never while a handler holds records.

Which tasks are frozen may differ between replicas (a read thaws on one master only); nothing
else does: a row and a live record of the same task read alike, and :meth:`rows` packs a live
record into the very bytes its frozen row would be, so snapshots and digests agree.
"""

from __future__ import annotations

import operator
import sys
import zlib
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import msgpack

from agentflow.state.records import (
    TERMINAL_STATUSES,
    Attempt,
    Priority,
    TaskRecord,
    TaskSpec,
    TaskStatus,
)

__all__ = ["ROW_VERSION", "RowHead", "TaskRows", "pack_task", "row_head", "unpack_task"]

ROW_VERSION = 1  # the first element of every row: bump when the field order changes

_TASK_FIELDS = tuple(f for f in TaskRecord.__slots__ if not f.startswith("__"))  # type: ignore[attr-defined]
_SPEC_FIELDS = tuple(f for f in TaskSpec.__slots__ if not f.startswith("__"))  # type: ignore[attr-defined]
_ATTEMPT_FIELDS = tuple(f for f in Attempt.__slots__ if not f.startswith("__"))  # type: ignore[attr-defined]
# Spec and attempt fields added with log format 3 are packed only when set: a row without them
# keeps the bytes of a row from before them, and a short row is padded with None when read.
_SPEC_LEGACY = _SPEC_FIELDS.index("workspace")
_ATTEMPT_LEGACY = _ATTEMPT_FIELDS.index("workspace")
_SPEC_AT = _TASK_FIELDS.index("spec")
_ATTEMPTS_AT = _TASK_FIELDS.index("attempts")
_PRIORITY_AT = _TASK_FIELDS.index("priority")
_STATUS_AT = _TASK_FIELDS.index("status")
_ID_AT = _TASK_FIELDS.index("id")
_IDEMPOTENCY_AT = _TASK_FIELDS.index("idempotency_key")
_DEPENDENCIES_AT = _TASK_FIELDS.index("dependencies")
_WORKFLOW_AT = _TASK_FIELDS.index("workflow_id")
_GROUP_AT = _TASK_FIELDS.index("group")
# Short strings that repeat across tasks: one object each, whichever row they came from.
_INTERNED_AT = tuple(_TASK_FIELDS.index(name) for name in ("group", "worker_id", "trigger"))


_task_values = operator.attrgetter(*_TASK_FIELDS)
_spec_values = operator.attrgetter(*_SPEC_FIELDS)
_attempt_values = operator.attrgetter(*_ATTEMPT_FIELDS)
_PACKER = msgpack.Packer(use_bin_type=True)  # for the event loop's thread only


def pack_task(task: TaskRecord, packer: msgpack.Packer | None = None) -> bytes:
    """The task as one row: ``[ROW_VERSION, field, ...]`` in :class:`TaskRecord` order."""
    row: list[Any] = [ROW_VERSION, *_task_values(task)]
    row[_SPEC_AT + 1] = _trimmed(_spec_values(task.spec), _SPEC_LEGACY)
    row[_ATTEMPTS_AT + 1] = [_trimmed(_attempt_values(a), _ATTEMPT_LEGACY) for a in task.attempts]
    packed: bytes = (packer or _PACKER).pack(row)
    return packed


def _trimmed(values: tuple[Any, ...], legacy: int) -> tuple[Any, ...]:
    """``values`` without its trailing None fields past the first ``legacy`` ones."""
    end = len(values)
    while end > legacy and values[end - 1] is None:
        end -= 1
    return values if end == len(values) else values[:end]


@dataclass(frozen=True, slots=True)
class RowHead:
    """What the machine's indexes need of a finished task read back frozen from a snapshot."""

    id: str
    status: TaskStatus
    idempotency_key: str | None
    dependencies: list[str]
    workflow_id: str | None
    group: str | None


def unpack_task(row: bytes) -> TaskRecord:
    return _record(_values(row))


def row_head(row: bytes) -> RowHead:
    """What the machine's indexes need of a task, read from its row without building it."""
    return _head(_values(row))


def _values(row: bytes) -> list[Any]:
    values = msgpack.unpackb(row, raw=False, strict_map_key=False)
    if not isinstance(values, list) or not values or values[0] != ROW_VERSION:
        raise ValueError(f"not a task row of version {ROW_VERSION}")
    del values[0]
    return values


def _head(values: list[Any]) -> RowHead:
    return RowHead(
        id=values[_ID_AT],
        status=TaskStatus(values[_STATUS_AT]),
        idempotency_key=values[_IDEMPOTENCY_AT],
        dependencies=values[_DEPENDENCIES_AT],
        workflow_id=values[_WORKFLOW_AT],
        group=values[_GROUP_AT],
    )


def _record(values: list[Any]) -> TaskRecord:
    values[_SPEC_AT] = _build(
        TaskSpec, _SPEC_FIELDS, _padded(values[_SPEC_AT], _SPEC_LEGACY, _SPEC_FIELDS)
    )
    values[_ATTEMPTS_AT] = [
        _build(Attempt, _ATTEMPT_FIELDS, _padded(a, _ATTEMPT_LEGACY, _ATTEMPT_FIELDS))
        for a in values[_ATTEMPTS_AT]
    ]
    values[_PRIORITY_AT] = Priority(values[_PRIORITY_AT])
    values[_STATUS_AT] = TaskStatus(values[_STATUS_AT])
    for at in _INTERNED_AT:
        if values[at] is not None:
            values[at] = sys.intern(values[at])
    for attempt in values[_ATTEMPTS_AT]:
        attempt.worker_id = sys.intern(attempt.worker_id)
    return _build(TaskRecord, _TASK_FIELDS, values)


_T = TypeVar("_T")


def _padded(values: list[Any], legacy: int, names: tuple[str, ...]) -> list[Any]:
    """A packed spec or attempt with its trimmed trailing fields back as None. Fewer than
    ``legacy`` fields is no row of ours: left short, :func:`_build` refuses it."""
    if legacy <= len(values) < len(names):
        values.extend([None] * (len(names) - len(values)))
    return values


def _build(cls: type[_T], names: tuple[str, ...], values: list[Any]) -> _T:
    """An instance of the slotted dataclass ``cls`` from its field values in order, without
    running ``__init__`` (every field is given; a frozen class is filled the same way)."""
    if len(values) != len(names):
        raise ValueError(f"{cls.__name__} row has {len(values)} fields, expected {len(names)}")
    obj = object.__new__(cls)
    for name, value in zip(names, values, strict=True):
        object.__setattr__(obj, name, value)
    return obj


# The preset dictionary's size: a row beyond it is a large one (a long result), not a pattern, and
# every deflate and inflate first reads the whole dictionary.
_ZDICT_MAX = 1024


class TaskRows(MutableMapping[str, TaskRecord]):
    """Task id -> record, in submission order; finished tasks beyond ``recent`` frozen."""

    def __init__(self, recent: int) -> None:
        self.recent_max = max(0, recent)
        self._rows: dict[str, TaskRecord | bytes] = {}  # insertion order = submission order
        self._recent: dict[str, None] = {}  # live finished tasks, the first finished first
        self.frozen = 0  # how many rows are frozen (for metrics and tests)
        self._zdict: bytes | None = None  # the first row frozen: what later rows resemble

    # -- rows in memory: deflated against the first row, which they mostly repeat -----------

    def _freeze(self, row: bytes) -> bytes:
        if self._zdict is None:
            self._zdict = row[:_ZDICT_MAX]
        deflate = zlib.compressobj(1, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, self._zdict)
        return deflate.compress(row) + deflate.flush()

    def _thaw(self, frozen: bytes) -> bytes:
        assert self._zdict is not None  # set by the first _freeze
        inflate = zlib.decompressobj(-15, self._zdict)
        return inflate.decompress(frozen) + inflate.flush()

    # -- Mapping ----------------------------------------------------------------------------

    def __getitem__(self, task_id: str) -> TaskRecord:
        row = self._rows[task_id]
        if isinstance(row, TaskRecord):
            return row
        task = unpack_task(self._thaw(row))
        self._rows[task_id] = task
        self.frozen -= 1
        self._recent[task_id] = None
        return task

    @overload
    def get(self, task_id: str, /) -> TaskRecord | None: ...
    @overload
    def get(self, task_id: str, /, default: TaskRecord | _T) -> TaskRecord | _T: ...
    def get(self, task_id: str, /, default: object = None) -> object:
        """The task (thawed if frozen), or ``default``."""
        row = self._rows.get(task_id)
        if row is None:
            return default
        return row if isinstance(row, TaskRecord) else self[task_id]

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __setitem__(self, task_id: str, task: TaskRecord) -> None:
        if isinstance(self._rows.get(task_id), bytes):
            self.frozen -= 1
        self._rows[task_id] = task
        if task.status in TERMINAL_STATUSES:
            self._recent[task_id] = None

    def __delitem__(self, task_id: str) -> None:
        if isinstance(self._rows.pop(task_id), bytes):
            self.frozen -= 1
        self._recent.pop(task_id, None)

    # -- reads that keep frozen tasks frozen ------------------------------------------------

    def peek(self, task_id: str) -> TaskRecord | None:
        """The task as it is, without thawing it (a frozen one is decoded anew: read only)."""
        row = self._rows.get(task_id)
        if row is None or isinstance(row, TaskRecord):
            return row
        return unpack_task(self._thaw(row))

    def row(self, task_id: str) -> bytes | None:
        """The task's row, the bytes :meth:`rows` gives for it, without thawing it."""
        row = self._rows.get(task_id)
        if row is None or isinstance(row, bytes):
            return row if row is None else self._thaw(row)
        return pack_task(row)

    def live(self) -> Iterator[TaskRecord]:
        """Records not frozen: every unfinished task and the newest finished ones."""
        return (row for row in self._rows.values() if isinstance(row, TaskRecord))

    # -- finishing and freezing -------------------------------------------------------------

    def finished(self, task_id: str) -> None:
        """``task_id`` became terminal: frozen once ``recent`` newer tasks finished."""
        self._recent.pop(task_id, None)
        self._recent[task_id] = None

    def reopened(self, task_id: str) -> None:
        self._recent.pop(task_id, None)

    def compact(self) -> None:
        """Freeze the finished tasks beyond the newest ``recent`` (call between commands)."""
        while len(self._recent) > self.recent_max:
            task_id = next(iter(self._recent))
            del self._recent[task_id]
            task = self._rows.get(task_id)
            if isinstance(task, TaskRecord) and task.status in TERMINAL_STATUSES:
                self._rows[task_id] = self._freeze(pack_task(task))
                self.frozen += 1

    # -- snapshot ---------------------------------------------------------------------------

    def load(self, row: bytes) -> TaskRecord | RowHead:
        """Add a task from a snapshot's row: a finished one stays frozen as that row (and only
        its :class:`RowHead` is decoded, for the caller's indexes)."""
        values = _values(row)
        if values[_STATUS_AT] in TERMINAL_STATUSES:
            head = _head(values)
            self._rows[head.id] = self._freeze(row)
            self.frozen += 1
            return head
        task = _record(values)
        self._rows[task.id] = task
        return task

    def rows(self) -> list[bytes]:
        """Every task as its row, in submission order: the same bytes whether frozen or not."""
        packer = msgpack.Packer(use_bin_type=True)  # snapshots are taken on another thread
        return [
            self._thaw(row) if isinstance(row, bytes) else pack_task(row, packer)
            for row in self._rows.values()
        ]
