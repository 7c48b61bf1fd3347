"""When schedules fire, on a manual clock: cron in a time zone across daylight-saving changes,
``every`` periods, the catchup policies and their bound, and the ``FireSchedule`` handler's
guarantee that a fire time runs once, whoever proposes it and however late."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentflow.errors import ConflictError, ValidationError
from agentflow.scheduler.firing import (
    Spec,
    check_cron,
    check_timezone,
    due_fire_times,
    firing_commands,
    next_fire_ms,
    next_run_ms,
)
from agentflow.state import StateMachine
from agentflow.state.commands import (
    Command,
    CreateSchedule,
    FireSchedule,
    UpdateSchedule,
)
from agentflow.state.schedules import ScheduleLimits

S = 1000
T0 = 1_800_000_000_000  # a whole second


def _ms(*when: int, tz: Any = UTC) -> int:
    return int(datetime(*when, tzinfo=tz).timestamp() * 1000)  # type: ignore[misc]


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%m-%d %H:%M")


def _fires(spec: Spec, start_ms: int, count: int) -> list[str]:
    out, at = [], start_ms
    for _ in range(count):
        at = next_fire_ms(spec, at)
        out.append(_utc(at))
    return out


def test_a_daily_job_in_a_skipped_hour_runs_when_the_clock_jumps_and_once_in_a_repeated_one() -> (
    None
):
    berlin = Spec(cron="30 2 * * *", every_ms=None, timezone="Europe/Berlin", origin_ms=0)
    # 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist, the job runs at 03:00.
    assert _fires(berlin, _ms(2026, 3, 28, 12), 3) == ["03-29 01:00", "03-30 00:30", "03-31 00:30"]
    # 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice, the job runs once.
    assert _fires(berlin, _ms(2026, 10, 24, 12), 2) == ["10-25 00:30", "10-26 01:30"]


def test_an_hourly_job_keeps_one_run_per_real_hour_across_the_fall_back() -> None:
    new_york = Spec(cron="0 * * * *", every_ms=None, timezone="America/New_York", origin_ms=0)
    runs = _fires(new_york, _ms(2026, 11, 1, 3), 5)  # 01:00 EDT, then 01:00 EST an hour later
    assert runs == ["11-01 04:00", "11-01 05:00", "11-01 06:00", "11-01 07:00", "11-01 08:00"]


def test_every_counts_from_its_origin() -> None:
    spec = Spec(cron=None, every_ms=90 * S, timezone="UTC", origin_ms=T0)
    assert next_fire_ms(spec, T0) == T0 + 90 * S
    assert next_fire_ms(spec, T0 + 90 * S) == T0 + 180 * S  # strictly after
    assert next_fire_ms(spec, T0 + 91 * S) == T0 + 180 * S
    assert due_fire_times(spec, T0, T0 + 400 * S, 10) == (
        [T0 + k * 90 * S for k in (1, 2, 3, 4)],
        False,
    )
    assert due_fire_times(spec, T0, T0 + 400 * S, 2) == ([T0 + 270 * S, T0 + 360 * S], True)
    assert due_fire_times(spec, T0, T0 + 89 * S, 10) == ([], False)


def test_cron_due_times_include_now_and_are_bounded() -> None:
    spec = Spec(cron="* * * * *", every_ms=None, timezone="UTC", origin_ms=0)
    minute = 60 * S
    start = _ms(2026, 1, 1)
    assert due_fire_times(spec, start, start + 3 * minute, 10) == (
        [start + minute, start + 2 * minute, start + 3 * minute],
        False,
    )
    times, more = due_fire_times(spec, start, start + 1000 * minute, 100)
    assert more and len(times) == 100 and times[-1] == start + 1000 * minute


@pytest.mark.parametrize(
    "expr", ["* * * *", "* * * * * *", "61 * * * *", "* * 32 * *", "bogus", "* * * * MON-FUNDAY"]
)
def test_invalid_cron_is_refused(expr: str) -> None:
    with pytest.raises(ValidationError):
        check_cron(expr)


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "", "../../etc/passwd", "/etc/localtime", "UTC+1"]
)
def test_unknown_time_zones_are_refused(zone: str) -> None:
    with pytest.raises(ValidationError):
        check_timezone(zone)


# -- the table, the handler and the leader's pure pass -------------------------------------------

TASK = {
    "id": "scheduled",
    "title": "tick",
    "description": "",
    "spec": {"command": "true", "env": {}, "cwd": None},
}


class Cluster:
    """A state machine and the leader's pass over it, on a manual clock."""

    def __init__(self, limits: ScheduleLimits | None = None) -> None:
        self.sm = StateMachine(schedule_limits=limits)
        self.now = T0
        self.index = 0

    def apply(self, command: Command) -> Any:
        self.index += 1
        return self.sm.apply(self.index, command)

    def create(self, **fields: Any) -> None:
        fields = {"name": "s", "every_ms": S, "template": TASK} | fields
        record = self.apply(CreateSchedule(now_ms=self.now, **fields))
        assert not isinstance(record, Exception), record

    def leader_pass(self) -> list[FireSchedule]:
        table = self.sm.schedules
        commands = firing_commands(table.values(), self.now, table.limits)
        for command in commands:
            self.apply(command)
        return commands

    def run_keys(self) -> list[str]:
        return sorted(t.idempotency_key or "" for t in self.sm.tasks.values())


def test_every_fire_time_runs_once_with_a_key_of_schedule_and_fire_time() -> None:
    c = Cluster()
    c.create(overlap="allow")
    c.now += 3 * S + 400
    assert [f.fire_ms for f in c.leader_pass()] == [T0 + 3 * S]  # catchup none: the latest
    c.now += S
    c.leader_pass()
    assert c.leader_pass() == []  # nothing new due
    assert c.run_keys() == [f"schedule:s:{T0 + 3 * S}", f"schedule:s:{T0 + 4 * S}"]
    record = c.sm.schedules.get("s")
    assert record is not None and record.runs == 2 and record.last_fire_ms == T0 + 4 * S


def test_a_fire_time_proposed_again_or_out_of_order_is_refused_and_changes_nothing() -> None:
    c = Cluster()
    c.create(overlap="allow")
    c.now += 2 * S
    assert c.apply(FireSchedule(now_ms=c.now, name="s", fire_ms=T0 + 2 * S))["run_id"]
    before = (c.sm.schedules.snapshot(), c.sm.tasks.rows())
    for fire_ms in (T0 + 2 * S, T0 + S):  # an old leader's proposal, committed late
        assert isinstance(
            c.apply(FireSchedule(now_ms=c.now, name="s", fire_ms=fire_ms)), ConflictError
        )
    assert isinstance(
        c.apply(FireSchedule(now_ms=c.now, name="s", fire_ms=c.now + S)), ValidationError
    )  # not yet due by the command's own time
    assert (c.sm.schedules.snapshot(), c.sm.tasks.rows()) == before
    assert len(c.run_keys()) == 1


def test_two_leaders_computing_from_the_same_committed_state_fire_each_time_once() -> None:
    c = Cluster()
    c.create(overlap="allow", catchup="all")
    c.now += 5 * S
    table = c.sm.schedules
    first = firing_commands(table.values(), c.now, table.limits)  # the old leader's pass
    second = firing_commands(table.values(), c.now + S, table.limits)  # the new one's, later
    for command in [*first[:2], *second]:  # the old one got two in before it died
        c.apply(command)
    fires = sorted(int(k.rsplit(":", 1)[1]) for k in c.run_keys())
    assert fires == [T0 + k * S for k in range(1, 7)]  # unbroken, no duplicate


@pytest.mark.parametrize(
    ("catchup", "late_by", "fired", "ran"),
    [
        ("all", 10, list(range(1, 11)), True),
        ("last", 10, [10], True),
        ("none", 10, [10], True),  # the latest, within the grace: a leader change's delay
        ("all", 500, list(range(401, 501)), True),  # the bound: the latest 100 only
    ],
)
def test_catchup_policies(catchup: str, late_by: int, fired: list[int], ran: bool) -> None:
    c = Cluster()
    c.create(overlap="allow", catchup=catchup)
    c.now += late_by * S + 500
    commands = c.leader_pass()
    assert [(f.fire_ms - T0) // S for f in commands] == fired
    assert all(f.run is ran for f in commands)
    assert len(c.sm.tasks) == (len(fired) if ran else 0)
    record = c.sm.schedules.get("s")
    assert record is not None and record.last_fire_ms == T0 + fired[-1] * S
    c.now += S
    assert [f.fire_ms for f in c.leader_pass()] == [T0 + (late_by + 1) * S]  # back on time


def test_catchup_none_passes_over_a_fire_time_later_than_the_grace() -> None:
    c = Cluster(ScheduleLimits(late_grace_ms=60 * S))
    c.create(every_ms=300 * S, catchup="none")
    c.now += 300 * S + 61 * S
    [passed] = c.leader_pass()
    assert (passed.fire_ms, passed.run) == (T0 + 300 * S, False)
    record = c.sm.schedules.get("s")
    assert record is not None and (record.runs, record.skipped) == (0, 1)
    assert len(c.sm.tasks) == 0
    c.now = T0 + 600 * S
    [on_time] = c.leader_pass()
    assert on_time.run and record.runs == 1


@pytest.mark.parametrize(
    ("overlap", "runs", "skipped", "first_status"),
    [("skip", 1, 1, "queued"), ("allow", 2, 0, "queued"), ("cancel_previous", 2, 0, "cancelled")],
)
def test_overlap_with_the_previous_run_still_live(
    overlap: str, runs: int, skipped: int, first_status: str
) -> None:
    c = Cluster()
    c.create(overlap=overlap)
    c.now += S
    c.leader_pass()
    record = c.sm.schedules.get("s")
    assert record is not None and record.last_run_id is not None
    first = record.last_run_id
    c.now += S
    c.leader_pass()  # the first task is still queued: no worker
    assert (record.runs, record.skipped) == (runs, skipped)
    assert c.sm.tasks[first].status.value == first_status
    assert record.last_fire_ms == T0 + 2 * S  # a skipped fire time still counts as fired


def test_a_workflow_run_gets_fresh_ids_and_its_dependencies() -> None:
    c = Cluster()
    a = TASK | {"id": "a", "key": "a"}
    b = TASK | {"id": "b", "key": "b", "dependencies": ["a"]}
    template = {"name": "nightly", "failure_policy": "continue", "tasks": [a, b]}
    c.create(kind="workflow", template=template, overlap="allow")
    for _ in range(2):
        c.now += S
        c.leader_pass()
    assert len(c.sm.workflows) == 2
    for wf in c.sm.workflows.values():
        first, second = (c.sm.tasks[t] for t in wf.task_ids)
        assert second.dependencies == [first.id] and first.status.value == "queued"
        assert wf.idempotency_key is not None and wf.idempotency_key.startswith("schedule:s:")


def test_paused_schedules_do_not_fire_and_resuming_does_not_run_the_paused_time() -> None:
    c = Cluster()
    c.create(paused=True, catchup="all", overlap="allow")
    c.now += 5 * S
    assert c.leader_pass() == []
    record = c.sm.schedules.get("s")
    assert record is not None and next_run_ms(record) is None
    c.apply(UpdateSchedule(now_ms=c.now, name="s", paused=False))
    assert c.leader_pass() == []
    c.now += S
    assert [f.fire_ms for f in c.leader_pass()] == [T0 + 6 * S]


def test_schedules_are_in_the_snapshot_and_the_digest() -> None:
    c = Cluster()
    empty = c.sm.digest()
    c.create(overlap="allow")
    assert c.sm.digest() != empty
    c.now += S
    c.leader_pass()
    copy = StateMachine()
    copy.restore(c.sm.snapshot())
    assert copy.digest() == c.sm.digest()
    restored = copy.schedules.get("s")
    assert restored is not None and restored.last_fire_ms == T0 + S and restored.runs == 1


def test_malformed_entries_are_refused_by_the_handler() -> None:
    c = Cluster(ScheduleLimits(schedules_max=1))
    bad: list[dict[str, Any]] = [
        {"every_ms": None},  # no timing
        {"cron": "* * * * *"},  # both
        {"every_ms": 10},  # below the limit
        {"overlap": "sometimes"},
        {"template": {"id": "x"}},
        {"kind": "workflow"},
        {"name": "no spaces allowed"},
    ]
    for change in bad:
        fields = {"name": "s", "every_ms": S, "template": TASK} | change
        assert isinstance(c.apply(CreateSchedule(now_ms=c.now, **fields)), ValidationError), fields
    assert len(c.sm.schedules) == 0
    c.create()
    assert isinstance(
        c.apply(CreateSchedule(now_ms=c.now, name="s", every_ms=S, template=TASK)), ConflictError
    )


def test_cancel_previous_cancels_a_live_workflow_in_the_same_entry() -> None:
    c = Cluster()
    template = {"name": "wf", "failure_policy": "continue", "tasks": [TASK | {"id": "a"}]}
    c.create(kind="workflow", template=template, overlap="cancel_previous")
    c.now += S
    c.leader_pass()
    record = c.sm.schedules.get("s")
    assert record is not None and record.last_run_id is not None
    first = record.last_run_id
    c.now += S
    [fired] = c.leader_pass()
    assert c.sm.workflows[first].status.value == "cancelled"
    assert (
        record.last_run_id != first and c.sm.workflows[record.last_run_id].status.value == "running"
    )
    assert fired.fire_ms == T0 + 2 * S


def test_a_new_timing_counts_from_the_change_and_a_paused_schedule_refuses_a_firing() -> None:
    c = Cluster()
    c.create(catchup="all", overlap="allow")
    c.now += 10 * S + 300
    c.apply(UpdateSchedule(now_ms=c.now, name="s", every_ms=4 * S))
    assert c.leader_pass() == []  # the ten seconds before the change do not run
    c.now += 4 * S
    assert [f.fire_ms for f in c.leader_pass()] == [T0 + 14 * S + 300]
    c.apply(UpdateSchedule(now_ms=c.now, name="s", paused=True))
    c.now += 4 * S
    refused = c.apply(FireSchedule(now_ms=c.now, name="s", fire_ms=c.now))
    assert isinstance(refused, ConflictError)
