"""Schedules: a pure table of named periodic submissions (issue 16), like Celery beat entries
or Nomad periodic jobs.

A schedule holds its timing (a 5-field ``cron`` expression in an IANA ``timezone``, or an
``every_ms`` period counted from ``origin_ms``), what each run submits (``template``: a task or
a workflow, validated by the API as the submit routes validate them), an ``overlap`` policy, a
``catchup`` policy and whether it is ``paused``. Fire times are not decided here: the leader
computes them from its clock (:mod:`agentflow.scheduler.firing`) and proposes one
``FireSchedule`` per fire time; this table records the last one (``last_fire_ms``), so a fire
time never fires twice and a new leader resumes from the committed one.

Nothing here reads a clock or does I/O; refusals raise typed errors from
:mod:`agentflow.errors`. Handlers: :mod:`agentflow.state.schedule_ops`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, TypeVar

from agentflow.errors import ConflictError, NotFoundError, OverloadedError, ValidationError

__all__ = [
    "SCHEDULE_NAME_PATTERN",
    "Catchup",
    "Overlap",
    "RunKind",
    "ScheduleLimits",
    "ScheduleRecord",
    "ScheduleTable",
    "run_key",
]

SCHEDULE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
_NAME = re.compile(SCHEDULE_NAME_PATTERN)


def run_key(name: str, fire_ms: int) -> str:
    """The idempotency key of the run of schedule ``name`` at ``fire_ms``."""
    return f"schedule:{name}:{fire_ms}"


class Overlap(StrEnum):
    SKIP = "skip"  # the previous run is still live: this fire time passes without a run
    ALLOW = "allow"  # runs may overlap
    CANCEL_PREVIOUS = "cancel_previous"  # cancel the live previous run, in the same entry


class Catchup(StrEnum):
    NONE = "none"  # a fire time missed by more than the grace is passed over
    LAST = "last"  # of the fire times missed, only the latest runs
    ALL = "all"  # every fire time missed runs, up to ScheduleLimits.catchup_max


class RunKind(StrEnum):
    TASK = "task"
    WORKFLOW = "workflow"


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduleLimits:
    """Bounds on schedules. Named limits, the same on every master."""

    schedules_max: int = 1_000
    every_ms_min: int = 1_000  # a shorter period is a busy loop, not a schedule
    every_ms_max: int = 366 * 86_400_000
    catchup_max: int = 100  # fire times run by one catch-up under ``all``; older ones pass
    late_grace_ms: int = 60_000  # under ``none``, how late a fire time may still run


@dataclass(slots=True, kw_only=True)
class ScheduleRecord:
    name: str
    cron: str | None
    every_ms: int | None
    timezone: str
    kind: RunKind
    template: dict[str, Any]
    overlap: Overlap
    catchup: Catchup
    paused: bool
    created_index: int  # the log index that created it: part of its runs' ids
    created_ms: int
    origin_ms: int  # where an ``every`` period counts from (created, or its spec changed)
    since_ms: int  # fire times at or before this never run (created, changed, resumed)
    last_fire_ms: int | None = None  # the last fire time that fired (ran or was passed)
    last_run_id: str | None = None  # the task or workflow that the last run created
    last_run_ms: int | None = None  # the fire time of that run
    runs: int = 0  # runs created
    skipped: int = 0  # fire times passed: overlap ``skip``, catchup ``none`` too late

    def to_wire(self) -> dict[str, Any]:
        return asdict(self) | {
            "kind": self.kind.value,
            "overlap": self.overlap.value,
            "catchup": self.catchup.value,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> ScheduleRecord:
        return cls(
            **data
            | {
                "kind": RunKind(data["kind"]),
                "overlap": Overlap(data["overlap"]),
                "catchup": Catchup(data["catchup"]),
            }
        )


_E = TypeVar("_E", bound=StrEnum)


def _enum(kind: type[_E], value: str, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(m.value for m in kind)
        raise ValidationError(f"{what} is one of {choices}, not {value!r:.40}") from None


def parse_overlap(value: str) -> Overlap:
    return _enum(Overlap, value, "overlap")


def parse_catchup(value: str) -> Catchup:
    return _enum(Catchup, value, "catchup")


def parse_kind(value: str) -> RunKind:
    return _enum(RunKind, value, "a schedule's run")


class ScheduleTable:
    """Schedules by name, in creation order."""

    def __init__(self, limits: ScheduleLimits | None = None) -> None:
        self.limits = limits or ScheduleLimits()
        self.schedules: dict[str, ScheduleRecord] = {}
        self.version = 0  # rises with every change: the leader's loop re-reads the table then

    def __len__(self) -> int:
        return len(self.schedules)

    def values(self) -> list[ScheduleRecord]:
        return list(self.schedules.values())

    def get(self, name: str) -> ScheduleRecord | None:
        return self.schedules.get(name)

    def require(self, name: str) -> ScheduleRecord:
        record = self.schedules.get(name)
        if record is None:
            raise NotFoundError(f"no schedule {name!r:.140}", schedule=name)
        return record

    def check_timing(self, cron: str | None, every_ms: int | None) -> None:
        """Exactly one of ``cron`` and ``every_ms``, the period within the limits."""
        if (cron is None) == (every_ms is None):
            raise ValidationError("a schedule has either a cron expression or an every period")
        if every_ms is not None and not (
            self.limits.every_ms_min <= every_ms <= self.limits.every_ms_max
        ):
            raise ValidationError(
                f"every is from {self.limits.every_ms_min} ms to {self.limits.every_ms_max} ms,"
                f" not {every_ms} ms",
                field="every",
            )

    def add(self, record: ScheduleRecord) -> ScheduleRecord:
        if not _NAME.match(record.name):
            raise ValidationError(
                f"schedule name {record.name!r:.140} does not match {SCHEDULE_NAME_PATTERN}"
            )
        self.check_timing(record.cron, record.every_ms)
        if record.name in self.schedules:
            raise ConflictError(f"schedule {record.name} exists", schedule=record.name)
        if len(self.schedules) >= self.limits.schedules_max:
            raise OverloadedError(f"{self.limits.schedules_max} schedules exist: delete some first")
        self.schedules[record.name] = record
        self.version += 1
        return record

    def remove(self, name: str) -> ScheduleRecord:
        record = self.require(name)
        del self.schedules[name]
        self.version += 1
        return record

    def changed(self) -> None:
        self.version += 1

    # -- snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> list[dict[str, Any]]:
        return [s.to_wire() for s in self.schedules.values()]

    def restore(self, wires: list[dict[str, Any]]) -> None:
        self.schedules = {w["name"]: ScheduleRecord.from_wire(w) for w in wires}
        self.version += 1
