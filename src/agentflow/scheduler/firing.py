"""When schedules fire: a pure function of (schedules, now) -> the ``FireSchedule`` commands.

The leader's loop (:class:`agentflow.scheduler.loop.Scheduler`) calls :func:`firing_commands`
with its clock and proposes what it returns, in order. Everything is computed from the
*committed* state: a schedule's next fire time is the first after its last fire time (or after
the time it was created, changed or resumed), so a new leader picks up exactly where the last
committed firing left off; the ``FireSchedule`` handler refuses a fire time that is not later
than the last one, so a time proposed twice (by an old and a new leader) runs once.

Cron expressions are evaluated by ``cronsim`` (5 fields, Debian cron's rules for daylight
saving time: a job due in a skipped hour runs when the clock jumps, one in a repeated hour runs
once) in the schedule's IANA time zone (``zoneinfo``). Nothing here reads the clock or does I/O
beyond zoneinfo reading the system's time-zone database.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from agentflow.errors import ValidationError
from agentflow.state.commands import FireSchedule
from agentflow.state.schedules import Catchup, ScheduleLimits, ScheduleRecord

__all__ = [
    "Spec",
    "check_cron",
    "check_timezone",
    "due_fire_times",
    "firing_commands",
    "next_fire_ms",
    "next_run_ms",
    "next_wake_ms",
    "spec_of",
]

CRON_FIELDS = 5  # minute hour day-of-month month day-of-week; no seconds, no years
CRON_CHARS_MAX = 200
_SCAN_MAX = 10_000  # cron fire times looked at in one step (a sparse expression is still bounded)


@dataclass(frozen=True, slots=True, kw_only=True)
class Spec:
    """A schedule's timing: ``cron`` in ``timezone``, or ``every_ms`` from ``origin_ms``."""

    cron: str | None
    every_ms: int | None
    timezone: str
    origin_ms: int


def spec_of(record: ScheduleRecord) -> Spec:
    return Spec(
        cron=record.cron,
        every_ms=record.every_ms,
        timezone=record.timezone,
        origin_ms=record.origin_ms,
    )


@functools.lru_cache(maxsize=256)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def check_timezone(name: str) -> ZoneInfo:
    """The zone named ``name`` (IANA, e.g. ``Europe/Paris``), or a :class:`ValidationError`."""
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        raise ValidationError(f"unknown time zone {name!r:.80}", field="timezone")
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValidationError(f"unknown time zone {name!r:.80}", field="timezone") from None


def check_cron(expr: str) -> str:
    """``expr`` if it is a valid 5-field cron expression, else a :class:`ValidationError`."""
    if len(expr) > CRON_CHARS_MAX or len(expr.split()) != CRON_FIELDS:
        raise ValidationError(
            f"cron expression {expr!r:.80} must have {CRON_FIELDS} fields "
            "(minute hour day-of-month month day-of-week)",
            field="cron",
        )
    try:
        CronSim(expr, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ValidationError(
            f"invalid cron expression {expr!r:.80}: {exc}", field="cron"
        ) from None
    return expr


def _to_ms(moment: datetime) -> int:
    return int(moment.timestamp()) * 1000


def _at(ms: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ms // 1000, tz=UTC).astimezone(zone)


def next_fire_ms(spec: Spec, after_ms: int) -> int:
    """The first fire time strictly after ``after_ms``."""
    if spec.every_ms is not None:
        periods = (after_ms - spec.origin_ms) // spec.every_ms + 1
        return spec.origin_ms + max(1, periods) * spec.every_ms
    assert spec.cron is not None
    times = CronSim(spec.cron, _at(after_ms, _zone(spec.timezone)))
    for _ in range(_SCAN_MAX):  # times rise; the loop only guards against one that does not
        fire = _to_ms(next(times))
        if fire > after_ms:
            return fire
    raise ValidationError(f"cron expression {spec.cron!r} gives no time after {after_ms}")


def due_fire_times(spec: Spec, after_ms: int, now_ms: int, limit: int) -> tuple[list[int], bool]:
    """The latest ``limit`` fire times in ``(after_ms, now_ms]``, oldest first, and whether
    earlier ones were left out."""
    if limit <= 0 or next_fire_ms(spec, after_ms) > now_ms:
        return [], False
    if spec.every_ms is not None:
        newest = spec.origin_ms + ((now_ms - spec.origin_ms) // spec.every_ms) * spec.every_ms
        oldest = next_fire_ms(spec, after_ms)
        count = (newest - oldest) // spec.every_ms + 1
        taken = min(count, limit)
        return [newest - k * spec.every_ms for k in range(taken - 1, -1, -1)], count > limit
    assert spec.cron is not None
    start = _at(now_ms, _zone(spec.timezone)) + timedelta(seconds=1)  # so that now counts
    backwards = CronSim(spec.cron, start, reverse=True)
    found: list[int] = []
    for _ in range(min(limit + 1, _SCAN_MAX)):
        fire = _to_ms(next(backwards))
        if fire <= after_ms:
            break
        if fire <= now_ms and (not found or fire < found[-1]):
            found.append(fire)
    more = len(found) > limit
    return sorted(found[:limit]), more


def _after_ms(record: ScheduleRecord) -> int:
    last = record.last_fire_ms
    return record.since_ms if last is None else max(last, record.since_ms)


def next_run_ms(record: ScheduleRecord) -> int | None:
    """When ``record`` fires next (None while paused); it may lie in the past when the leader
    has yet to catch up."""
    if record.paused:
        return None
    try:
        return _next_fire_memo(spec_of(record), _after_ms(record))
    except (ValidationError, CronSimError, ZoneInfoNotFoundError, ValueError):
        return None  # only an entry that bypassed the API's checks can get here


# The leader's loop asks again for every schedule whenever one of them changed (each firing):
# remembered, a cron expression is evaluated once per fire time, not once per schedule per firing.
_next_fire_memo = functools.lru_cache(maxsize=4096)(next_fire_ms)


def next_wake_ms(records: Iterable[ScheduleRecord]) -> int | None:
    """The earliest next fire time among the schedules not paused."""
    times = [t for t in map(next_run_ms, records) if t is not None]
    return min(times, default=None)


def _commands_for(
    record: ScheduleRecord, now_ms: int, limits: ScheduleLimits
) -> list[FireSchedule]:
    after = _after_ms(record)
    keep = limits.catchup_max if record.catchup is Catchup.ALL else 1
    times, _ = due_fire_times(spec_of(record), after, now_ms, keep)
    if not times:
        return []
    if record.catchup is Catchup.NONE and now_ms - times[-1] > limits.late_grace_ms:
        return [FireSchedule(now_ms=now_ms, name=record.name, fire_ms=times[-1], run=False)]
    return [FireSchedule(now_ms=now_ms, name=record.name, fire_ms=t) for t in times]


def firing_commands(
    records: Iterable[ScheduleRecord], now_ms: int, limits: ScheduleLimits
) -> list[FireSchedule]:
    """What the leader proposes at ``now_ms``, in order: for each schedule not paused whose
    next fire time has passed, by its catchup policy,

    - ``all``: every fire time missed since the last one, oldest first, at most
      ``limits.catchup_max`` (the latest ones; older ones are passed over);
    - ``last``: only the latest fire time passed;
    - ``none``: the latest fire time passed if it is at most ``limits.late_grace_ms`` late
      (a leader change or a busy loop delays it a little); a later one is recorded as passed
      without running.
    """
    commands: list[FireSchedule] = []
    for record in records:
        if record.paused:
            continue
        try:
            commands.extend(_commands_for(record, now_ms, limits))
        except (ValidationError, CronSimError, ZoneInfoNotFoundError, ValueError):
            continue  # only an entry that bypassed the API's checks: it never fires
    return commands
